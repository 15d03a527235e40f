"""The Starlette app: genkit's JSON API, the web page, and the OpenAI-compatible routes.

- ``GET /v1/health``: ok, and per model the queue and batch counters.
- ``GET /v1/models``: each model's name, family, modality, conditions and options.
- ``POST /v1/generate``: samples as base64 PNG or text (optionally streamed as
  server-sent events), or written under ``--output-dir`` by ``Generator.sample_to``
  (the files and manifest of ``genkit sample``).
- ``POST /v1/edit``: images inpainted, varied or reconstructed (``genkit.serve.edit``).
- ``GET /``: the web page (``static/index.html``), which uses only the routes above.

Any error is a JSON body with a one-line message; nothing a client sends stops the server.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Route

from genkit.errors import GenkitError
from genkit.serve.batching import Batcher
from genkit.serve.edit import edit
from genkit.serve.models import ServedModel
from genkit.serve.openai_api import openai_routes
from genkit.serve.schema import (
    Limits,
    RequestError,
    Work,
    build_work,
    check_fields,
    conditions_of,
    integer,
    one_line,
    pick_model,
    seed_of,
)
from genkit.serve.web import (
    TokenCheck,
    collect,
    encode_output,
    error_payload,
    error_response,
    event_stream,
    read_json,
    sample_record,
    sse,
    status_of,
    stream_job,
)

PAGE = Path(__file__).parent / "static" / "index.html"
GENERATE_FIELDS = {"model", "n", "seed", "label", "labels", "prompt", "prompts", "options",
                   "output", "out", "overwrite", "stream"}
_OUT_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclasses.dataclass
class ServerState:
    """Everything the routes share: the models, their batchers and the server's settings."""

    models: dict[str, ServedModel]
    batchers: dict[str, Batcher]
    limits: Limits
    output_dir: Path | None
    started: float = dataclasses.field(default_factory=time.time)


def create_app(models: dict[str, ServedModel], limits: Limits | None = None,
               token: str | None = None, max_batch: int = 32, batch_wait_ms: float = 10.0,
               output_dir: str | Path | None = None) -> Starlette:
    """The ASGI app serving ``models`` (see the module docstring for the routes)."""
    limits = limits or Limits()
    batchers = {name: Batcher(m.generator, encode_output, max_batch, batch_wait_ms,
                              limits.max_queue) for name, m in models.items()}
    state = ServerState(models, batchers, limits,
                        Path(output_dir).expanduser().resolve() if output_dir else None)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        for batcher in batchers.values():
            batcher.start()
        yield
        for batcher in batchers.values():
            await batcher.stop()

    routes = [
        Route("/", page, methods=["GET"]),
        Route("/v1/health", partial(health, state), methods=["GET"]),
        Route("/v1/models", partial(list_models, state), methods=["GET"]),
        Route("/v1/models/{name:path}", partial(one_model, state), methods=["GET"]),
        Route("/v1/generate", partial(generate, state), methods=["POST"]),
        Route("/v1/edit", partial(edit, state), methods=["POST"]),
        *openai_routes(state),
    ]
    app = Starlette(routes=routes, lifespan=lifespan,
                    middleware=[Middleware(TokenCheck, token=token)],
                    exception_handlers={RequestError: _request_error,
                                        GenkitError: _request_error,
                                        HTTPException: _http_error, Exception: _server_error})
    app.state.genkit = state
    return app


# ----------------------------------------------------------------------------- errors
async def _request_error(request: Request, exc: Exception) -> JSONResponse:
    status = status_of(exc)
    return error_response(status, one_line(exc), getattr(exc, "code", None),
                          getattr(exc, "param", None))


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    message = {404: f"no route {request.url.path}; see GET /v1/models, POST /v1/generate, "
                    "POST /v1/edit",
               405: f"{request.method} is not allowed on {request.url.path}"}
    return error_response(exc.status_code, message.get(exc.status_code, str(exc.detail)))


async def _server_error(request: Request, exc: Exception) -> JSONResponse:
    return error_response(500, f"internal error: {type(exc).__name__}: {one_line(exc)}",
                          "internal_error")


# ----------------------------------------------------------------------------- routes
async def page(request: Request) -> FileResponse:
    return FileResponse(PAGE, media_type="text/html")


async def health(state: ServerState, request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok", "uptime_s": round(time.time() - state.started, 1),
                         "models": {name: {"queued": b.queued, **b.stats}
                                    for name, b in state.batchers.items()}})


async def list_models(state: ServerState, request: Request) -> JSONResponse:
    return JSONResponse({"object": "list", "data": [m.describe() for m in state.models.values()]})


async def one_model(state: ServerState, request: Request) -> JSONResponse:
    return JSONResponse(pick_model(state.models, request.path_params["name"]).describe())


async def generate(state: ServerState, request: Request) -> Any:
    """``POST /v1/generate``: see the module docstring and README's "Serving"."""
    body = await read_json(request, state.limits.max_body_bytes)
    check_fields(body, GENERATE_FIELDS, "/v1/generate")
    model = pick_model(state.models, body.get("model"))
    n = integer(body, "n", 1, 1, state.limits.max_n)
    seed = seed_of(body)
    labels, prompts = conditions_of(model, body, state.limits)
    work = build_work(model, n, seed, labels, prompts, body.get("options"), state.limits)
    output = body.get("output", "base64")
    if output not in ("base64", "files"):
        raise RequestError(f"'output' must be \"base64\" or \"files\", got {output!r}"[:200],
                           param="output")
    stream = body.get("stream", False)
    if not isinstance(stream, bool) or (stream and model.modality != "text"):
        raise RequestError("'stream' is true or false, and streams only text models",
                           param="stream")
    batcher = state.batchers[model.name]
    head = {"model": model.name, "seed": seed, "n": n}
    if output == "files":
        return JSONResponse({**head, **await write_files(state, batcher, work, body)})
    if stream:
        batcher.check_room(n)
        return event_stream(stream_job(batcher, work, _native_events(head, time.perf_counter())))
    start = time.perf_counter()
    samples = await collect(request, batcher, batcher.submit(work))
    return JSONResponse({**head, "seconds": round(time.perf_counter() - start, 3),
                         "samples": samples})


def _native_events(head: dict[str, Any], start: float) -> Any:
    """SSE of ``/v1/generate``: ``delta`` (text of sample 0 as it comes), ``sample`` (each
    finished sample), then ``done`` or ``error``."""

    def render(kind: str, payload: Any) -> list[str]:
        if kind == "delta":
            return [sse({"index": 0, "text": payload}, "delta")]
        if kind == "samples":
            return [sse(sample_record(r, e), "sample") for r, e in payload]
        if kind == "done":
            return [sse({**head, "seconds": round(time.perf_counter() - start, 3)}, "done")]
        return [sse(error_payload(payload), "error")]

    return render


async def write_files(state: ServerState, batcher: Batcher, work: Work,
                      body: dict[str, Any]) -> dict[str, Any]:
    """Write the samples under ``--output-dir`` with ``Generator.sample_to``: the files,
    ``manifest.jsonl`` and ``run.json`` of ``genkit sample``; resumable, like it."""
    if state.output_dir is None:
        raise RequestError("this server writes no files; start it with --output-dir DIR",
                           param="output")
    name = body.get("out") or f"{work.model.name}-seed{work.seed}"
    parts = PurePosixPath(name).parts if isinstance(name, str) else ()
    if not parts or not all(_OUT_PART.match(p) for p in parts):
        raise RequestError(f"'out' must be a relative folder name such as \"digits/run1\" "
                           f"(letters, digits, . _ -), got {name!r}"[:200], param="out")
    out = state.output_dir.joinpath(*parts)
    overwrite = body.get("overwrite", False)
    if not isinstance(overwrite, bool):
        raise RequestError("'overwrite' must be true or false", param="overwrite")
    g = work.model.generator
    grid = {"grid": out / "grid.png"} if g.modality == "image" else {}
    report = await batcher.run_exclusive(
        lambda: g.sample_to(out, n=work.n, seed=work.seed, overwrite=overwrite, progress=False,
                            **grid, **work.condition_kwargs, **work.option_values), work.n)
    manifest = [json.loads(line) for line in
                (out / "manifest.jsonl").read_text(encoding="utf-8").splitlines() if line]
    return {"out": str(out), "written": report.written, "skipped": report.skipped,
            "files": sorted({r["file"] for r in manifest}), "manifest": manifest}


@contextlib.contextmanager
def serve_in_thread(app: Starlette, host: str = "127.0.0.1", port: int = 0,
                    log_level: str = "warning") -> Iterator[str]:
    """Run ``app`` under uvicorn in a background thread (tests, notebooks, benchmarks);
    yields the base URL, and stops the server on exit."""
    import socket
    import threading

    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True,
                              name="genkit-serve")
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        if not server.started:
            raise RuntimeError("the server did not start")
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
