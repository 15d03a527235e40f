"""HTTP plumbing shared by genkit's JSON API and the OpenAI-compatible one.

Errors are JSON in OpenAI's shape, ``{"error": {"message", "type", "code", "param"}}``,
so OpenAI clients raise them with the server's one-line message. Bodies are read with a
size cap before parsing. A request whose client disconnects stops waiting and frees its
slots in the batcher (the ``finally`` of every route that submits work).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import io
import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse

from genkit.errors import GenkitError
from genkit.serve.batching import Batcher, Job, Row
from genkit.serve.schema import RequestError, one_line

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
               405: "invalid_request_error", 413: "invalid_request_error",
               429: "rate_limit_error", 500: "server_error"}


def error_response(status: int, message: str, code: str | None = None,
                   param: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": ERROR_TYPES.get(status, "error"),
                                   "code": code, "param": param}}, status_code=status)


async def read_json(request: Request, limit: int) -> dict[str, Any]:
    """The request body as a JSON object: 413 past ``limit`` bytes, 400 when malformed."""
    too_big = RequestError(f"request body over this server's limit of {limit} bytes",
                           status=413, code="body_too_large")
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise too_big
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_big
    try:
        data = json.loads(bytes(body))
    except (ValueError, RecursionError) as exc:
        raise RequestError(f"malformed JSON body: {one_line(exc)}", code="malformed_json") from None
    if not isinstance(data, dict):
        raise RequestError("the request body must be a JSON object", code="malformed_json")
    return data


class TokenCheck:
    """ASGI middleware: every ``/v1/`` route needs ``Authorization: Bearer TOKEN`` (the
    page at ``/`` is static and asks for the token itself)."""

    def __init__(self, app: Any, token: str | None) -> None:
        self.app, self.token = app, (token or "").encode()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if self.token and scope["type"] == "http" and scope["path"].startswith("/v1"):
            headers = dict(scope.get("headers") or [])
            scheme, _, given = headers.get(b"authorization", b"").partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(given.strip(), self.token):
                response = error_response(401, "missing or wrong token: send the header "
                                          "'Authorization: Bearer TOKEN'", "invalid_api_key")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def encode_output(output: Any) -> dict[str, Any]:
    """A sample as JSON fields (run on the model's worker thread): ``image`` (base64 PNG,
    with the ``label`` a model drew for itself) or ``text``."""
    if isinstance(output, str):
        return {"text": output}
    buf = io.BytesIO()
    output.save(buf, format="PNG")
    fields: dict[str, Any] = {"image": base64.b64encode(buf.getvalue()).decode("ascii")}
    label = getattr(output, "info", {}).get("label")
    if label is not None:
        fields["label"] = int(label)
    return fields


def sample_record(row: Row, encoded: dict[str, Any]) -> dict[str, Any]:
    return {"index": row.index, "seed": row.seed, **row.condition, **encoded}


async def _disconnected(request: Request) -> None:
    """Returns when the client has gone (the body is already read)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def collect(request: Request, batcher: Batcher, job: Job) -> list[dict[str, Any]]:
    """Every sample of ``job``, in index order; stops early if the client disconnects.
    Always frees the job's slots."""

    async def results() -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        async for kind, payload in job.events():
            if kind == "samples":
                records += [sample_record(r, e) for r, e in payload]
            elif kind == "error":
                raise payload
        return sorted(records, key=lambda r: r["index"])

    gather = asyncio.ensure_future(results())
    watch = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({gather, watch}, return_when=asyncio.FIRST_COMPLETED)
        if gather.done():
            return gather.result()
        raise RequestError("client disconnected", status=499, code="client_gone")
    finally:
        for task in (gather, watch):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await watch
        batcher.release(job)


def sse(data: Any, event: str | None = None) -> str:
    """One server-sent event."""
    text = data if isinstance(data, str) else json.dumps(data)
    return (f"event: {event}\n" if event else "") + f"data: {text}\n\n"


def event_stream(chunks: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(chunks, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def error_payload(exc: BaseException) -> dict[str, Any]:
    """An exception as the ``error`` object of a stream's last event."""
    status = exc.status if isinstance(exc, RequestError) else status_of(exc)
    return {"error": {"message": one_line(exc), "type": ERROR_TYPES.get(status, "error"),
                      "code": getattr(exc, "code", None)}}


def status_of(exc: BaseException) -> int:
    """HTTP status of an exception raised while serving: genkit's own errors are the
    request's fault (400); anything else is the server's (500)."""
    if isinstance(exc, RequestError):
        return exc.status
    return 400 if isinstance(exc, GenkitError) else 500


async def stream_job(batcher: Batcher, work: Any, render: Any) -> AsyncIterator[str]:
    """Server-sent events of a streaming job: ``render(kind, payload)`` turns each batcher
    event into SSE text. The job is queued only once the response starts, and freed when
    it ends or the client goes (starlette cancels this generator on a disconnect)."""
    try:
        job = batcher.submit(work, stream=True)
    except RequestError as exc:
        for chunk in render("error", exc):
            yield chunk
        return
    try:
        async for kind, payload in job.events():
            for chunk in render(kind, payload):
                yield chunk
    finally:
        batcher.release(job)
