"""``genkit serve``: an HTTP server over loaded generators, for other services and people.

The pieces, each in its own module so none grows large:

- ``models``: the table of served models (what ``GET /v1/models`` shows) and their loading.
- ``schema``: request bodies turned into validated work (sizes, options, conditions, limits).
- ``batching``: the dynamic batcher that lets concurrent requests share a generation batch.
- ``app``: the Starlette app: genkit's JSON API, the token check, errors as JSON.
- ``openai_api``: the OpenAI-compatible routes, mapped onto the same work and batcher.
- ``command``: the ``serve`` click command (``genkit serve`` / ``python -m genkit.serve``).
- ``static/index.html``: the web page at ``/``; it talks to the JSON API only.

Importing this package is light (no torch, no starlette): the command imports them when run.
"""
