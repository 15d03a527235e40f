"""Request bodies turned into validated work, before anything reaches a model.

Every check a client can fail happens here, with a one-line message and a 4xx status:
sizes against the server's limits, unknown fields, wrong types, labels out of range,
prompts too long, sampling options the plugin refuses. What passes is a :class:`Work`:
n samples, sample i seeded ``sample_seed(seed, i)`` with its own conditions, laid out as
``Generator.sample`` lays them out (labels or prompts cycle; ``per_condition`` gives
blocks), so a served sample equals the one drawn from Python with the same arguments.
"""

from __future__ import annotations

import dataclasses
import secrets
from typing import Any

from genkit.errors import GenkitError
from genkit.seeding import sample_seed
from genkit.serve.models import HIDDEN_OPTIONS, ServedModel

MAX_SEED = 2**63 - 1


class RequestError(Exception):
    """A request the server refuses: ``status`` (4xx) and a one-line ``message``."""

    def __init__(self, message: str, status: int = 400, code: str = "invalid_request",
                 param: str | None = None) -> None:
        super().__init__(message)
        self.message, self.status, self.code, self.param = message, status, code, param


@dataclasses.dataclass
class Limits:
    """What one request may ask for (``genkit serve --max-n ...``)."""

    max_n: int = 64  # samples per request
    max_new_tokens: int = 512  # text models' max_new_tokens
    max_steps: int = 1000  # sampler steps (diffusion)
    max_prompt_chars: int = 4000  # characters per prompt
    max_body_bytes: int = 1 << 20  # request body
    max_queue: int = 1024  # samples waiting or running per model; more gets 429


@dataclasses.dataclass
class Work:
    """Validated generation work for one model."""

    model: ServedModel
    n: int
    seed: int
    conditions: list[dict[str, Any]]  # one per sample
    options: Any  # the generator's validated SampleOptions
    option_values: dict[str, Any]  # as the client gave them (for Generator.sample_to)
    condition_kwargs: dict[str, Any]  # labels= / prompts= / per_condition= for sample_to

    def seeds(self) -> list[int]:
        return [sample_seed(self.seed, i) for i in range(self.n)]


def pick_model(models: dict[str, ServedModel], name: Any, modality: str | None = None,
               route: str = "") -> ServedModel:
    """The served model ``name`` (the only one when ``name`` is left out)."""
    if name is None:
        fitting = [m for m in models.values() if modality in (None, m.modality)]
        if len(fitting) == 1:
            return fitting[0]
        raise RequestError(f"give \"model\": one of {', '.join(models)}", param="model")
    if not isinstance(name, str) or name not in models:
        raise RequestError(f"unknown model {name!r}; this server has: {', '.join(models)}",
                           status=404, code="model_not_found", param="model")
    model = models[name]
    if modality is not None and model.modality != modality:
        other = "/v1/images/generations" if model.modality == "image" else \
            "/v1/completions or /v1/chat/completions"
        raise RequestError(f"model {name!r} makes {model.modality}, not {modality}; use {other}",
                           param="model")
    return model


def check_fields(body: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise RequestError(f"unknown field{'s' if len(unknown) > 1 else ''} "
                           f"{', '.join(map(repr, unknown))} in {where}; known: "
                           f"{', '.join(sorted(allowed))}", param=unknown[0])


def integer(body: dict[str, Any], key: str, default: int | None, low: int, high: int) -> int:
    """``body[key]`` as an int in [low, high] (``default`` when missing or null)."""
    value = body.get(key)
    if value is None:
        if default is None:
            raise RequestError(f"{key!r} is required", param=key)
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(f"{key!r} must be an integer, got {value!r}"[:200], param=key)
    if not low <= value <= high:
        raise RequestError(f"{key!r} must be between {low} and {high}, got {value}", param=key)
    return value


def seed_of(body: dict[str, Any]) -> int:
    """The request's base seed: given, or a fresh random one (returned to the client)."""
    return integer(body, "seed", secrets.randbelow(2**31), 0, MAX_SEED)


def _list_of(value: Any, kind: type, key: str) -> list[Any]:
    items = value if isinstance(value, list) else [value]
    for item in items:
        if isinstance(item, bool) or not isinstance(item, kind):
            raise RequestError(f"{key!r} must be {'integers' if kind is int else 'strings'}, "
                               f"got {item!r}"[:200], param=key)
    if not items:
        raise RequestError(f"{key!r} is an empty list", param=key)
    return items


def conditions_of(model: ServedModel, body: dict[str, Any], limits: Limits
                  ) -> tuple[list[int], list[str]]:
    """Labels and prompts of a request (``label``/``labels``, ``prompt``/``prompts``),
    checked against what the model takes and the server's limits."""
    labels: list[int] = []
    prompts: list[str] = []
    for key in ("label", "labels"):
        if body.get(key) is not None:
            labels += _list_of(body[key], int, key)
    for key in ("prompt", "prompts"):
        if body.get(key) is not None:
            prompts += _list_of(body[key], str, key)
    for kind, values in (("label", labels), ("prompt", prompts)):
        if values and kind not in model.conditions:
            takes = ", ".join(model.conditions) or "no conditions"
            raise RequestError(f"model {model.name!r} does not take a {kind}; it takes: {takes}",
                               param=kind)
        if len(values) > limits.max_n:
            raise RequestError(f"{len(values)} {kind}s, more than this server's limit of "
                               f"{limits.max_n}", param=kind)
    for label in labels:
        if model.num_classes and not 0 <= label < model.num_classes:
            raise RequestError(f"label {label} is out of range: model {model.name!r} has "
                               f"{model.num_classes} classes (0 to {model.num_classes - 1})",
                               param="label")
    for prompt in prompts:
        if len(prompt) > limits.max_prompt_chars:
            raise RequestError(f"a prompt of {len(prompt)} characters is longer than this "
                               f"server's limit of {limits.max_prompt_chars}", param="prompt")
    return labels, prompts


def options_of(model: ServedModel, values: Any, limits: Limits) -> Any:
    """The model's validated ``SampleOptions`` from a request's ``options`` object."""
    values = {} if values is None else values
    if not isinstance(values, dict):
        raise RequestError(f"'options' must be an object of sampling options, got {values!r}"[:200],
                           param="options")
    hidden = sorted(set(values) & HIDDEN_OPTIONS)
    if hidden:
        raise RequestError(f"option {hidden[0]!r} is set by whoever runs the server, not per "
                           "request", param=hidden[0])
    try:
        options = model.generator.options(values)
    except GenkitError as exc:
        raise RequestError(one_line(exc), param="options") from None
    tokens = getattr(options, "max_new_tokens", None)
    if isinstance(tokens, int) and tokens > limits.max_new_tokens:
        raise RequestError(f"max_new_tokens {tokens} is more than this server's limit of "
                           f"{limits.max_new_tokens}", param="max_new_tokens")
    steps = getattr(options, "steps", None)
    if isinstance(steps, int) and steps > limits.max_steps:
        raise RequestError(f"steps {steps} is more than this server's limit of "
                           f"{limits.max_steps}", param="steps")
    return options


def build_work(model: ServedModel, n: int, seed: int, labels: list[int], prompts: list[str],
               option_values: dict[str, Any], limits: Limits,
               per_condition: int | None = None) -> Work:
    """Work for ``n`` samples (``per_condition`` per label/prompt when given, which sets n)."""
    options = options_of(model, option_values, limits)
    if labels and prompts:
        table = [{"label": lab, "prompt": p} for lab in labels for p in prompts]
    else:
        table = [{"label": lab} for lab in labels] or [{"prompt": p} for p in prompts]
    if per_condition is not None:
        n = per_condition * max(1, len(table))
    if n > limits.max_n:
        raise RequestError(f"{n} samples, more than this server's limit of {limits.max_n} per "
                           "request", param="n")
    if not table:
        conditions: list[dict[str, Any]] = [{} for _ in range(n)]
    elif per_condition is not None:
        conditions = [dict(table[i // per_condition]) for i in range(n)]
    else:
        conditions = [dict(table[i % len(table)]) for i in range(n)]
    kwargs: dict[str, Any] = {}
    if labels:
        kwargs["labels"] = labels
    if prompts:
        kwargs["prompts"] = prompts
    if per_condition is not None and table:
        kwargs["per_condition"] = per_condition
    return Work(model, n, seed, conditions, options, dict(option_values or {}), kwargs)


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (a client's error is always one line)."""
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())[:1000]
