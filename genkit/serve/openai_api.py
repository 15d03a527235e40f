"""OpenAI-compatible routes, so existing OpenAI clients and SDKs work unchanged.

``POST /v1/completions`` and ``POST /v1/chat/completions`` (text models, streaming too)
and ``POST /v1/images/generations`` (image models, ``response_format=b64_json``) map
their fields onto genkit's sampling options and run through the same validation and
batcher as ``/v1/generate``:

- ``max_tokens`` / ``max_completion_tokens`` -> ``max_new_tokens``; ``temperature`` (0 is
  greedy: ``top_k=1``), ``top_p``, ``seed``, ``n``, ``stop`` (text cut at the first stop
  string), ``echo`` -> ``include_prompt``. genkit's own options go in an ``options``
  object, or ``top_k`` / ``repetition_penalty`` at the top level (``extra_body``).
- A chat's prompt is its messages' text, one message a line (genkit's text models are
  plain language models with no chat template). ``finish_reason`` is ``"stop"``;
  token counts (``usage``) are not reported.
- Images: ``prompt`` for prompt-conditioned models; for class-conditional ones the label
  goes in ``extra_body={"label": 3}`` or as the prompt itself (``"3"``); unconditional
  models ignore the prompt. ``seed`` and ``options`` go in ``extra_body`` too.
"""

from __future__ import annotations

import time
import uuid
from functools import partial
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from genkit.serve.models import ServedModel
from genkit.serve.schema import (
    RequestError,
    Work,
    build_work,
    check_fields,
    conditions_of,
    integer,
    pick_model,
    seed_of,
)
from genkit.serve.web import collect, error_payload, event_stream, read_json, sse, stream_job

COMMON = {"model", "n", "seed", "user", "options", "stream", "stream_options"}
TEXT_FIELDS = COMMON | {"max_tokens", "temperature", "top_p", "top_k", "repetition_penalty",
                        "stop", "frequency_penalty", "presence_penalty", "logit_bias",
                        "logprobs"}
COMPLETION_FIELDS = TEXT_FIELDS | {"prompt", "echo", "best_of", "suffix"}
CHAT_FIELDS = TEXT_FIELDS | {"messages", "max_completion_tokens", "top_logprobs",
                             "response_format", "tools", "tool_choice", "parallel_tool_calls",
                             "reasoning_effort", "metadata", "store", "modalities"}
IMAGE_FIELDS = COMMON | {"prompt", "label", "response_format", "size", "quality", "style",
                         "background", "output_format", "moderation"}


def openai_routes(state: Any) -> list[Route]:
    return [Route("/v1/completions", partial(completions, state, chat=False), methods=["POST"]),
            Route("/v1/chat/completions", partial(completions, state, chat=True),
                  methods=["POST"]),
            Route("/v1/images/generations", partial(images, state), methods=["POST"])]


# ----------------------------------------------------------------------------- text
def _number(body: dict[str, Any], key: str, low: float, high: float) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise RequestError(f"{key!r} must be a number from {low} to {high}, got {value!r}"[:200],
                           param=key)
    return float(value)


def _text_options(model: ServedModel, body: dict[str, Any], chat: bool, limits: Any
                  ) -> dict[str, Any]:
    """genkit sampling options from OpenAI's fields (those the model has)."""
    values = body.get("options") or {}
    if not isinstance(values, dict):
        raise RequestError("'options' must be an object of sampling options", param="options")
    names = {f["name"] for f in model.option_fields()}
    tokens_key = "max_completion_tokens" if chat and body.get("max_completion_tokens") is not None \
        else "max_tokens"
    mapped: dict[str, Any] = {}
    if body.get(tokens_key) is not None:
        mapped["max_new_tokens"] = integer(body, tokens_key, None, 1, limits.max_new_tokens)
    temperature = _number(body, "temperature", 0.0, 2.0)
    if temperature == 0.0:
        mapped.update(temperature=1.0, top_k=1)  # greedy
    elif temperature is not None:
        mapped["temperature"] = temperature
    for key, low, high in (("top_p", 1e-9, 1.0), ("repetition_penalty", 1e-9, 100.0)):
        if body.get(key) is not None:
            mapped[key] = _number(body, key, low, high)
    if body.get("top_k") is not None:
        mapped["top_k"] = integer(body, "top_k", None, 0, 1_000_000)
    echo = body.get("echo", False)
    if not isinstance(echo, bool):
        raise RequestError("'echo' must be true or false", param="echo")
    mapped["include_prompt"] = echo and not chat
    return {**{k: v for k, v in mapped.items() if k in names}, **values}


def _stops(body: dict[str, Any]) -> list[str]:
    stop = body.get("stop")
    stops = [] if stop is None else [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or len(stops) > 4 or \
            not all(isinstance(s, str) and s for s in stops):
        raise RequestError("'stop' must be a string or a list of up to 4 non-empty strings",
                           param="stop")
    return stops


def _chat_prompt(messages: Any) -> str:
    if not isinstance(messages, list) or not messages:
        raise RequestError("'messages' must be a non-empty list of {role, content}",
                           param="messages")
    lines = []
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):  # content parts: only text ones are understood
            if not all(isinstance(p, dict) and p.get("type") == "text" for p in content):
                raise RequestError("only text content parts are supported", param="messages")
            content = "".join(str(p.get("text", "")) for p in content)
        if not isinstance(content, str):
            raise RequestError("each message needs a string 'content'", param="messages")
        lines.append(content)
    return "\n".join(lines)


def _text_work(state: Any, body: dict[str, Any], chat: bool) -> tuple[Work, list[str]]:
    """Work for a completion request: n samples per prompt, choice index = sample index."""
    check_fields(body, CHAT_FIELDS if chat else COMPLETION_FIELDS,
                 "/v1/chat/completions" if chat else "/v1/completions")
    for key in ("logprobs", "suffix", "tools"):
        if body.get(key) not in (None, False, [], ""):
            raise RequestError(f"{key!r} is not supported by genkit serve", param=key)
    limits = state.limits
    model = pick_model(state.models, body.get("model"), "text")
    n = integer(body, "n", 1, 1, limits.max_n)
    if chat:
        prompts = [_chat_prompt(body.get("messages"))]
    else:
        prompt = body.get("prompt", "")
        prompts = [prompt] if isinstance(prompt, str) else prompt
        if not isinstance(prompts, list) or not prompts or \
                not all(isinstance(p, str) for p in prompts):
            raise RequestError("'prompt' must be a string or a list of strings (token ids are "
                               "not supported)", param="prompt")
    _, prompts = conditions_of(model, {"prompts": prompts}, limits)
    options = _text_options(model, body, chat, limits)
    work = build_work(model, n, seed_of(body), [], prompts, options, limits, per_condition=n)
    return work, _stops(body)


def _cut(text: str, stops: list[str]) -> tuple[str, bool]:
    """``text`` up to the first stop string; whether one was found."""
    hits = [text.find(s) for s in stops if s in text]
    return (text[: min(hits)], True) if hits else (text, False)


class _StopFilter:
    """Streams text up to the first stop string, holding back a tail that could be the
    start of one."""

    def __init__(self, stops: list[str]) -> None:
        self.stops, self.raw, self.sent, self.stopped = stops, "", 0, False
        self.hold = max((len(s) for s in stops), default=1) - 1

    def feed(self, piece: str, final: bool = False) -> str:
        if self.stopped:
            return ""
        self.raw += piece
        text, self.stopped = _cut(self.raw, self.stops)
        end = len(text) if (self.stopped or final) else max(self.sent, len(text) - self.hold)
        out, self.sent = text[self.sent:end], end
        return out


async def completions(state: Any, request: Request, *, chat: bool) -> Any:
    body = await read_json(request, state.limits.max_body_bytes)
    work, stops = _text_work(state, body, chat)
    batcher = state.batchers[work.model.name]
    meta = {"id": f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()), "model": work.model.name, "system_fingerprint": None}
    if body.get("stream", False) is True:
        batcher.check_room(work.n)
        return event_stream(stream_job(batcher, work, _text_events(meta, work.n, stops, chat)))
    samples = await collect(request, batcher, batcher.submit(work))
    choices = []
    for s in samples:
        text, _ = _cut(s["text"], stops)
        choice: dict[str, Any] = {"index": s["index"], "finish_reason": "stop", "logprobs": None}
        choice.update({"message": {"role": "assistant", "content": text}} if chat else
                      {"text": text})
        choices.append(choice)
    return JSONResponse({**meta, "choices": choices})


def _text_events(meta: dict[str, Any], n: int, stops: list[str], chat: bool) -> Any:
    """OpenAI's stream: chunks of choice 0 as its tokens come, every other choice in one
    chunk when its sample is done, a finish chunk per choice, then ``[DONE]``."""
    meta = {**meta, "object": "chat.completion.chunk" if chat else "text_completion"}
    filters = [_StopFilter(stops) for _ in range(n)]
    started = [False] * n  # a chat choice's first chunk carries the role

    def chunk(index: int, text: str | None, finish: str | None = None) -> str:
        if chat:
            delta: dict[str, Any] = {} if started[index] else {"role": "assistant"}
            if text is not None:
                delta["content"] = text
            piece: dict[str, Any] = {"delta": delta}
        else:
            piece = {"text": text or ""}
        started[index] = True
        return sse({**meta, "choices": [{"index": index, **piece, "finish_reason": finish,
                                         "logprobs": None}]})

    def render(kind: str, payload: Any) -> list[str]:
        if kind == "delta":
            out = filters[0].feed(payload)
            return [chunk(0, out)] if out or not started[0] else []
        if kind == "samples":
            chunks = []
            for row, encoded in payload:
                f, text = filters[row.index], encoded["text"]
                out = f.feed(text[len(f.raw):] if text.startswith(f.raw) else "", final=True)
                if out or not started[row.index]:
                    chunks.append(chunk(row.index, out))
                chunks.append(chunk(row.index, None, "stop"))
            return chunks
        if kind == "done":
            return [sse("[DONE]")]
        return [sse(error_payload(payload)), sse("[DONE]")]

    return render


# ----------------------------------------------------------------------------- images
def _image_conditions(model: ServedModel, body: dict[str, Any]) -> dict[str, Any]:
    """``{"label": ...}`` or ``{"prompt": ...}`` from an image request (see the docstring)."""
    prompt = body.get("prompt")
    if prompt is not None and not isinstance(prompt, str):
        raise RequestError("'prompt' must be a string", param="prompt")
    if "prompt" in model.conditions and prompt is not None:
        return {"prompt": prompt, **({"label": body["label"]} if body.get("label") is not None
                                     else {})}
    if body.get("label") is not None:
        return {"label": body["label"]}
    if "label" in model.conditions and prompt and prompt.strip():
        if prompt.strip().lstrip("-").isdigit():
            return {"label": int(prompt.strip())}
        raise RequestError(f"model {model.name!r} takes a class label 0 to "
                           f"{model.num_classes - 1}, not text: send the label as the prompt "
                           "(\"3\") or as \"label\" in extra_body", param="prompt")
    return {}


async def images(state: Any, request: Request) -> JSONResponse:
    body = await read_json(request, state.limits.max_body_bytes)
    check_fields(body, IMAGE_FIELDS, "/v1/images/generations")
    limits = state.limits
    model = pick_model(state.models, body.get("model"), "image")
    fmt = body.get("response_format") or "b64_json"
    if fmt not in ("b64_json", "url"):
        raise RequestError(f"'response_format' must be \"b64_json\" or \"url\" (a data: URL), "
                           f"got {fmt!r}"[:200], param="response_format")
    if body.get("stream"):
        raise RequestError("image generation does not stream", param="stream")
    n = integer(body, "n", 1, 1, limits.max_n)
    labels, prompts = conditions_of(model, _image_conditions(model, body), limits)
    work = build_work(model, n, seed_of(body), labels, prompts, body.get("options"), limits)
    batcher = state.batchers[model.name]
    samples = await collect(request, batcher, batcher.submit(work))
    data = []
    for s in samples:
        item: dict[str, Any] = {"b64_json": s["image"]} if fmt == "b64_json" else \
            {"url": "data:image/png;base64," + s["image"]}
        item.update({k: s[k] for k in ("seed", "label") if k in s})
        data.append(item)
    return JSONResponse({"created": int(time.time()), "data": data})
