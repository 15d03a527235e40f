"""The table of served models: loading them once at start-up, and describing them.

A model is named on the command line by a checkpoint directory (served under the
directory's name, or ``NAME=DIR``) or by a generator name, which serves that plugin's
shipped default model under the plugin's name. With nothing named, every installed
generator that ships a default model is served, so ``genkit serve`` alone is useful.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import genkit
from genkit.errors import CheckpointError

#: sampling options a request may not set: side files written on the server and
#: compilation switches belong to whoever runs the server, not to its clients
HIDDEN_OPTIONS = frozenset({"trajectory", "trajectory_samples", "trajectory_frames", "compile"})


@dataclasses.dataclass
class ServedModel:
    """One loaded generator and what clients need to know about it."""

    name: str
    generator: Any  # genkit Generator
    source: str  # the checkpoint directory it was loaded from

    @property
    def family(self) -> str:
        return self.generator.name

    @property
    def modality(self) -> str:
        return self.generator.modality

    @property
    def conditions(self) -> tuple[str, ...]:
        return tuple(self.generator.accepted_conditions())

    @property
    def num_classes(self) -> int:
        return int(getattr(self.generator.config, "num_classes", 0) or 0)

    def option_fields(self) -> list[dict[str, Any]]:
        """Each sampling option a request may set: name, type (as written in the plugin's
        dataclass) and default."""
        fields = []
        for field in dataclasses.fields(self.generator.SampleOptions):
            if field.name in HIDDEN_OPTIONS:
                continue
            default = field.default
            if default is dataclasses.MISSING and field.default_factory is not dataclasses.MISSING:
                default = field.default_factory()
            fields.append({"name": field.name, "type": _type_name(field.type),
                           "default": _json_ready(default)})
        return fields

    def describe(self) -> dict[str, Any]:
        """This model as ``GET /v1/models`` lists it (OpenAI's fields, then genkit's)."""
        return {"id": self.name, "object": "model", "created": 0, "owned_by": "genkit",
                "name": self.name, "family": self.family, "modality": self.modality,
                "conditions": list(self.conditions), "num_classes": self.num_classes,
                "options": self.option_fields(), "checkpoint": self.source}


def _type_name(annotation: Any) -> str:
    return annotation if isinstance(annotation, str) else getattr(annotation, "__name__",
                                                                  str(annotation))


def _json_ready(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def resolve_sources(names: tuple[str, ...], plugins: tuple[str, ...]) -> list[tuple[str, str]]:
    """(served name, checkpoint directory) for every model asked for, in order.

    ``names`` holds checkpoint directories, ``NAME=DIR`` pairs or generator names;
    ``plugins`` generator names. None of either: every shipped default model.
    """
    specs = {spec.name: spec for spec in genkit.generators()}
    wanted: list[tuple[str | None, str]] = []
    for item in names:
        label, eq, rest = item.partition("=")
        name, target = (label, rest) if eq and label and rest else (None, item)
        wanted.append((name, target))
    wanted += [(None, plugin) for plugin in plugins]
    if not wanted:
        wanted = [(None, s.name) for s in specs.values() if s.default_checkpoint_path()]
        if not wanted:
            raise CheckpointError("no installed generator ships a default model; name a "
                                  "checkpoint directory: genkit serve DIR")
    sources: list[tuple[str, str]] = []
    for name, target in wanted:
        path = Path(target).expanduser()
        if path.is_dir():
            default_name = path.resolve().name
            if default_name == "model" or default_name.startswith("step-"):
                default_name = path.resolve().parent.name  # runs/d/model -> d
            sources.append((name or default_name, str(path)))
            continue
        spec = specs.get(target)
        if spec is None:
            raise CheckpointError(f"{target!r} is neither a checkpoint directory nor an installed "
                                  f"generator; generators: {', '.join(sorted(specs)) or 'none'}")
        default = spec.default_checkpoint_path()
        if not default:
            raise CheckpointError(f"generator {target!r} ships no default model; give a "
                                  "checkpoint directory of it instead")
        sources.append((name or target, str(default)))
    return _unique_names(sources)


def _unique_names(sources: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The same model named twice is served once; two models under one name get -2, -3."""
    seen: dict[str, str] = {}
    out = []
    for name, path in sources:
        if seen.get(name) == path:
            continue
        base, k = name, 2
        while name in seen:
            name, k = f"{base}-{k}", k + 1
        seen[name] = path
        out.append((name, path))
    return out


def load_models(sources: list[tuple[str, str]], device: str = "auto") -> dict[str, ServedModel]:
    """Load every model once, at start-up (each served name gets its own generator, so
    each has its own worker thread and never shares modules with another)."""
    return {name: ServedModel(name, genkit.load(path, device=device), path)
            for name, path in sources}
