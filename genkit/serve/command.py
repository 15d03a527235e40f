"""The ``serve`` click command (``genkit serve``, or ``python -m genkit.serve``).

torch, starlette and uvicorn are imported inside the command, so registering it keeps
``genkit --help`` light. The server binds its socket before it starts, so a busy port is
a one-line error, and ``--port 0`` picks a free port (printed on start).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from genkit.errors import GenkitError
from genkit.serve.models import load_models, resolve_sources
from genkit.serve.schema import Limits

USER_ERROR = 2
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def _fail(message: str) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(USER_ERROR)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("models", nargs=-1, metavar="[CHECKPOINT_OR_ID]...")
@click.option("--plugin", "plugins", multiple=True, metavar="NAME",
              help="Serve this plugin's shipped default model (repeatable).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; any other than localhost needs --token.")
@click.option("--port", default=8000, show_default=True, type=int, help="0: a free port.")
@click.option("--token", envvar="GENKIT_SERVE_TOKEN", metavar="TOKEN",
              help="Bearer token every /v1 route requires (or GENKIT_SERVE_TOKEN).")
@click.option("--max-batch", default=32, show_default=True, type=click.IntRange(1),
              help="Most samples in one generation batch.")
@click.option("--batch-wait-ms", default=10.0, show_default=True, type=click.FloatRange(0),
              help="A batch waits this long after the latest request for more to join.")
@click.option("--max-n", default=64, show_default=True, type=click.IntRange(1),
              help="Most samples per request.")
@click.option("--max-new-tokens", default=512, show_default=True, type=click.IntRange(1),
              help="Most new tokens per text sample.")
@click.option("--max-steps", default=1000, show_default=True, type=click.IntRange(1),
              help="Most sampler steps per request.")
@click.option("--max-prompt-chars", default=4000, show_default=True, type=click.IntRange(1))
@click.option("--max-body-bytes", default=1 << 20, show_default=True, type=click.IntRange(1))
@click.option("--max-queue", default=1024, show_default=True, type=click.IntRange(1),
              help="Most samples queued per model; more get 429.")
@click.option("--output-dir", type=click.Path(path_type=Path),
              help="Folder under which requests may write files (\"output\": \"files\").")
@click.option("--device", default="auto", show_default=True)
@click.option("--threads", default=1, show_default=True, type=click.IntRange(1),
              help="torch threads (keep 1 on a shared machine).")
@click.option("--log-level", default="warning", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
def serve(models: tuple[str, ...], plugins: tuple[str, ...], host: str, port: int,
          token: str | None, max_batch: int, batch_wait_ms: float, max_n: int,
          max_new_tokens: int, max_steps: int, max_prompt_chars: int, max_body_bytes: int,
          max_queue: int, output_dir: Path | None, device: str, threads: int,
          log_level: str) -> None:
    """Serve models over HTTP: a web page, a JSON API and OpenAI-compatible routes.

    Each CHECKPOINT_OR_ID is a checkpoint directory (NAME=DIR to choose its name) or a
    generator name, which serves that plugin's shipped model; with none, every shipped
    model is served. Requests for one model that arrive within --batch-wait-ms share a
    batch; each sample is still exactly the one its seed gives alone.

    \b
    Examples:
      genkit serve                                   # the shipped models, on 127.0.0.1:8000
      genkit serve --plugin diffusion --plugin gpt
      genkit serve digits=runs/d/model --port 9000
      GENKIT_SERVE_TOKEN=s3cret genkit serve --host 0.0.0.0
    """
    try:
        import starlette  # noqa: F401
        import uvicorn
    except ImportError as exc:
        _fail(f"genkit serve needs the 'serve' extra ({exc.name} is missing): "
              "pip install 'genkit[serve]'")
    if host not in LOCAL_HOSTS and not token:
        _fail(f"--host {host} makes the server reachable from other machines: give --token "
              "TOKEN (or set GENKIT_SERVE_TOKEN)")
    limits = Limits(max_n=max_n, max_new_tokens=max_new_tokens, max_steps=max_steps,
                    max_prompt_chars=max_prompt_chars, max_body_bytes=max_body_bytes,
                    max_queue=max_queue)
    try:
        app, sock = _build(models, plugins, host, port, threads, device, limits,
                           {"token": token, "max_batch": max_batch, "batch_wait_ms": batch_wait_ms,
                            "output_dir": output_dir})
    except GenkitError as exc:
        _fail(" ".join(str(exc).split()))
    url_host = f"[{host}]" if ":" in host else host
    click.echo(f"genkit serve: http://{url_host}:{sock.getsockname()[1]}/ serving "
               f"{', '.join(app.state.genkit.models)} (Ctrl-C stops)", err=True)
    config = uvicorn.Config(app, log_level=log_level, timeout_graceful_shutdown=5)
    uvicorn.Server(config).run(sockets=[sock])


def _build(models: tuple[str, ...], plugins: tuple[str, ...], host: str, port: int,
           threads: int, device: str, limits: Limits, settings: dict[str, Any]
           ) -> tuple[Any, Any]:
    """Bind the socket, load the models (with ``threads`` torch threads), build the app."""
    import socket

    import torch

    from genkit.serve.app import create_app  # lazy: starlette, not imported for --help

    sources = resolve_sources(models, plugins)  # name errors before the slow part
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        _fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}; pick another --port")
    sock.listen(2048)
    torch.set_num_threads(threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    app = create_app(load_models(sources, device=device), limits, **settings)
    return app, sock
