"""``python -m genkit.serve ...``: the serve command without the ``genkit`` CLI group."""

from genkit.serve.command import serve

if __name__ == "__main__":
    serve(prog_name="genkit serve")
