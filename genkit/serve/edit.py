"""``POST /v1/edit``: inpainting, image-to-image and reconstruction over HTTP.

Body: ``model``, ``task`` (``img2img`` | ``inpaint`` | ``reconstruct``), ``images`` (a
list of base64 PNGs), ``masks`` (inpaint: a list, one per image, or one base64 PNG for
all; white = fill), and optionally ``strength``, ``seed``, ``label``/``labels``,
``prompt`` and ``options`` (the family's edit options). The answer holds one base64 PNG
per image, in order, each with its seed (and the label a model inferred), plus the
one-line notes on converted inputs. Edit i is ``Generator.edit``'s edit i with the same
arguments: an edit runs on the model's worker thread between generation batches.
"""

from __future__ import annotations

import base64
import binascii
import io
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from genkit.seeding import sample_seed
from genkit.serve.models import HIDDEN_OPTIONS
from genkit.serve.schema import (
    RequestError,
    check_fields,
    conditions_of,
    pick_model,
    seed_of,
)
from genkit.serve.web import encode_output, read_json

EDIT_FIELDS = {"model", "task", "images", "masks", "strength", "seed", "label", "labels",
               "prompt", "options"}
MAX_PIXELS = 2048 * 2048  # per decoded image: a small PNG must not unpack into gigabytes


def decode_png(value: Any, key: str, index: int) -> Any:
    """A base64 PNG (or any image PIL reads) as a PIL image, or a 400 naming which one."""
    from PIL import Image

    where = f"{key}[{index}]"
    if not isinstance(value, str):
        raise RequestError(f"{where} must be a base64 PNG string", param=key)
    try:
        data = base64.b64decode(value, validate=True)
        with Image.open(io.BytesIO(data)) as im:
            if im.width * im.height > MAX_PIXELS:
                raise RequestError(f"{where} is {im.width}x{im.height}, more than this server "
                                   f"takes ({MAX_PIXELS} pixels)", param=key)
            im.load()
            return im.copy()
    except (binascii.Error, ValueError):
        raise RequestError(f"{where} is not valid base64", param=key) from None
    except RequestError:
        raise
    except Exception as exc:  # PIL's many errors for a damaged or foreign file
        raise RequestError(f"{where} is not a readable image ({type(exc).__name__})",
                           param=key) from None


def _images(body: dict[str, Any], key: str, max_n: int) -> list[Any] | None:
    value = body.get(key)
    if value is None:
        return None
    items = value if isinstance(value, list) else [value] if key == "masks" else None
    if not items:
        raise RequestError(f"{key!r} must be a non-empty list of base64 PNGs", param=key)
    if len(items) > max_n:
        raise RequestError(f"{len(items)} {key}, more than this server's limit of {max_n}",
                           param=key)
    return [decode_png(item, key, i) for i, item in enumerate(items)]


async def edit(state: Any, request: Request) -> JSONResponse:
    """``POST /v1/edit`` (see the module docstring)."""
    body = await read_json(request, state.limits.max_body_bytes)
    check_fields(body, EDIT_FIELDS, "/v1/edit")
    model = pick_model(state.models, body.get("model"), "image")
    task = body.get("task")
    if not isinstance(task, str):
        raise RequestError("'task' is required: img2img, inpaint or reconstruct", param="task")
    images = _images(body, "images", state.limits.max_n)
    if images is None:
        raise RequestError("'images' is required: a list of base64 PNGs", param="images")
    masks = _images(body, "masks", state.limits.max_n)
    strength = body.get("strength")
    if strength is not None and (isinstance(strength, bool)
                                 or not isinstance(strength, (int, float))):
        raise RequestError(f"'strength' must be a number from 0 to 1, got {strength!r}"[:200],
                           param="strength")
    seed = seed_of(body)
    labels, prompts = conditions_of(model, body, state.limits)
    if len(prompts) > 1:
        raise RequestError("'prompt' is one string for every image", param="prompt")
    options = body.get("options") or {}
    if not isinstance(options, dict):
        raise RequestError("'options' must be an object of edit options", param="options")
    hidden = sorted(set(options) & HIDDEN_OPTIONS)
    if hidden:
        raise RequestError(f"option {hidden[0]!r} is set by whoever runs the server, not per "
                           "request", param=hidden[0])
    steps = options.get("steps")
    if isinstance(steps, int) and steps > state.limits.max_steps:
        raise RequestError(f"steps {steps} is more than this server's limit of "
                           f"{state.limits.max_steps}", param="steps")
    conditions: dict[str, Any] = {"labels": labels} if labels else {}
    if prompts:
        conditions["prompt"] = prompts[0]
    notes: list[str] = []
    g = model.generator
    start = time.perf_counter()
    outputs = await state.batchers[model.name].run_exclusive(
        lambda: g.edit(images, task=task, masks=masks, strength=strength, seed=seed,
                       note=notes.append, **conditions, **options), len(images))
    records = [{"index": i, "seed": sample_seed(seed, i), **encode_output(out)}
               for i, out in enumerate(outputs)]
    return JSONResponse({"model": model.name, "task": task, "seed": seed,
                         "seconds": round(time.perf_counter() - start, 3), "notes": notes,
                         "images": records})
