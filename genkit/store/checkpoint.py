"""Checkpoint directories: ``genkit.json`` beside safetensors weights, written atomically.

Layout of a checkpoint directory::

    genkit.json        format version, generator, plugin, versions, config, training summary,
                       and the size and sha256 of every weight file
    README.md          a model card written from genkit.json
    <weights>          the plugin's layout (a diffusers pipeline, a transformers model, ...)
    training_state/    only in training checkpoints: what an exact resume needs

A run directory (``genkit train --out DIR``) holds ``model/`` (the final model),
``checkpoints/step-NNNNNNNN/`` (training checkpoints), ``logs/`` and ``metrics.jsonl``;
:func:`resolve_checkpoint_dir` turns either kind into the checkpoint to load.

Writes go to a temporary sibling directory that is renamed into place, so a crash never
leaves half a checkpoint. Nothing is ever loaded with pickle.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
from pathlib import Path
from typing import Any

from genkit.config import config_from_dict, config_to_dict
from genkit.contract import GeneratorContract
from genkit.devices import resolve_device
from genkit.discovery.registry import get_registry
from genkit.errors import CheckpointError, PluginError, TrainingError
from genkit.fs import atomic_directory, atomic_write_text, sha256_file
from genkit.hub import resolve_model_path
from genkit.store.modelcard import write_model_card
from genkit.store.verify import (
    cached_sha256,
    inside,
    model_int_dtypes,
    parse_manifest,
    verify_weights,
)
from genkit.version import __version__

MANIFEST = "genkit.json"
FORMAT = "genkit-checkpoint"
FORMAT_VERSION = 1
TRAINING_STATE = "training_state"
CHECKPOINTS = "checkpoints"
FINAL_MODEL = "model"
STEP_PREFIX = "step-"


# ----------------------------------------------------------------------------- saving
def library_versions() -> dict[str, str]:
    """Versions of genkit and the libraries it stands on (those already imported)."""
    from importlib import metadata

    versions = {"genkit": __version__}
    for dist in ("torch", "diffusers", "transformers", "accelerate", "safetensors", "tokenizers"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[dist] = metadata.version(dist)
    return versions


def cast_weights(directory: Path, dtype: str) -> None:
    """Rewrite every safetensors file under ``directory`` with floating tensors as ``dtype``."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    target = getattr(torch, dtype)
    for file in directory.rglob("*.safetensors"):
        if TRAINING_STATE in file.relative_to(directory).parts:
            continue
        with safe_open(str(file), framework="pt") as fh:
            metadata = fh.metadata()
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
        tensors = {k: v.to(target) if v.is_floating_point() else v for k, v in tensors.items()}
        save_file(tensors, str(file), metadata=metadata)


def write_manifest(directory: Path, generator: GeneratorContract, training: dict[str, Any] | None,
                   extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write ``genkit.json`` (and the model card) for the weights already in ``directory``."""
    plugin: dict[str, Any] = {"name": None, "distribution": None, "version": None}
    with contextlib.suppress(PluginError):
        spec = get_registry().generator(generator.name)
        plugin = {"name": spec.plugin, "distribution": spec.distribution, "version": spec.version}
    weights = {}
    for file in generator.weight_files(directory):
        if TRAINING_STATE in file.relative_to(directory).parts:
            continue
        rel = file.relative_to(directory).as_posix()
        weights[rel] = {"bytes": file.stat().st_size, "sha256": sha256_file(file)}
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "generator": generator.name,
        "modality": generator.modality,
        "plugin": plugin,
        "versions": library_versions(),
        "config": config_to_dict(generator.config),
        "training": training or {},
        "weights": weights,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **(extra or {}),
    }
    atomic_write_text(directory / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    write_model_card(directory, manifest)
    return manifest


def save_checkpoint(generator: GeneratorContract, path: Path, weights_dtype: str | None = None,
                    training: dict[str, Any] | None = None,
                    write_extra: Any = None) -> Path:
    """Write ``generator`` as a checkpoint directory at ``path`` atomically.

    Args:
        generator: the generator to save; EMA weights are saved when it has them.
        path: the checkpoint directory (replaced whole if it exists).
        weights_dtype: e.g. ``"float16"`` to store floating weights at half size.
        training: the training summary for ``genkit.json`` (default: the generator's).
        write_extra: optional callable(tmp_dir) writing more files (training state).
    """
    path = Path(path)
    _check_replaceable(path)
    with atomic_directory(path) as tmp:
        with generator.sampling_weights():
            generator.save_weights(tmp)
        if weights_dtype:
            cast_weights(tmp, weights_dtype)
        if write_extra is not None:
            write_extra(tmp)
        write_manifest(tmp, generator, generator.training_summary if training is None else training)
    return path


def _check_replaceable(path: Path) -> None:
    if path.exists() and not path.is_dir():
        raise CheckpointError(f"{path} exists and is a file; choose a directory path")
    if path.is_dir() and any(path.iterdir()) and not (path / MANIFEST).is_file():
        raise CheckpointError(f"{path} exists and is not a genkit checkpoint; refusing to "
                              "overwrite it: choose another path")


# ----------------------------------------------------------------------------- loading
def step_checkpoints(run_dir: Path) -> list[Path]:
    """Complete training checkpoints of a run, oldest first."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    steps = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(STEP_PREFIX)
             and (p / MANIFEST).is_file()]
    return sorted(steps, key=lambda p: p.name)


def resume_point(run_dir: Path) -> Path:
    """The newest complete training checkpoint of a run: where ``--resume`` continues."""
    steps = step_checkpoints(run_dir)
    if not steps:
        raise TrainingError(f"--resume: {run_dir} holds no training checkpoint to "
                            "resume from; drop --resume to start a new run")
    return steps[-1]


def training_checkpoint(path: str | Path) -> Path:
    """A chosen training checkpoint to resume from (``--resume-from``): a checkpoint
    directory holding ``training_state/``, or a run directory's newest one."""
    directory = Path(path).expanduser()
    if directory.is_dir() and not (directory / MANIFEST).is_file():
        directory = resume_point(directory)
    directory = resolve_checkpoint_dir(directory)
    if not (directory / TRAINING_STATE).is_dir():
        raise TrainingError(f"--resume-from {path}: {directory} is a model without training "
                            "state; pick a checkpoints/step-N directory of a run (or use "
                            "--init-from to start a new run from its weights)")
    return directory


def resolve_checkpoint_dir(path: str | Path) -> Path:
    """The checkpoint directory for ``path``: itself, or a run directory's final model or
    newest training checkpoint; a Hub id ``ORG/NAME[@REV]`` is its cached snapshot."""
    path = resolve_model_path(path, "checkpoint")
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if not path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a file; give the checkpoint directory")
    if (path / MANIFEST).is_file():
        return path
    if (path / FINAL_MODEL / MANIFEST).is_file():
        return path / FINAL_MODEL
    steps = step_checkpoints(path)
    if steps:
        return steps[-1]
    if (path / "model_index.json").is_file() or (path / "config.json").is_file():
        raise CheckpointError(f"{path} is not a genkit checkpoint (no {MANIFEST}); to sample "
                              "from a plain diffusers pipeline directory pass --plugin diffusion")
    raise CheckpointError(f"{path} is not a genkit checkpoint (no {MANIFEST})")


def read_manifest(directory: Path) -> dict[str, Any]:
    """The validated ``genkit.json`` of a checkpoint directory: fields of the right types,
    a format this genkit reads, and every weight file present inside the checkpoint with
    its recorded size (the sha256 is checked when the weights are loaded)."""
    file = directory / MANIFEST
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CheckpointError(f"{directory} is not a genkit checkpoint (no {MANIFEST})") from None
    except UnicodeDecodeError:
        raise CheckpointError(f"{file} is damaged (not UTF-8 text); re-save the checkpoint "
                              "or use another one") from None
    except OSError as exc:
        raise CheckpointError(f"cannot read {file}: {exc.strerror or exc}") from None
    manifest = parse_manifest(text, file)
    if manifest.get("format") != FORMAT:
        raise CheckpointError(f"{file} is not a genkit checkpoint manifest")
    version = manifest.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CheckpointError(f"{file} is damaged: format_version must be a positive integer, "
                              f"got {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{directory} has checkpoint format {version!r}, newer than this "
                              f"genkit reads ({FORMAT_VERSION}); upgrade genkit")
    for key in ("generator", "config", "weights"):
        if key not in manifest:
            raise CheckpointError(f"{file} is damaged: it has no {key!r} entry")
    for rel, info in manifest["weights"].items():
        weight = inside(directory, rel)
        if not weight.is_file():
            raise CheckpointError(f"checkpoint {directory} is incomplete: {rel} is missing")
        if weight.stat().st_size != info["bytes"]:
            raise CheckpointError(f"checkpoint {directory} is damaged: {rel} has "
                                  f"{weight.stat().st_size} bytes, expected {info['bytes']} "
                                  "(truncated?)")
    return manifest


IDENTITY_KEYS = ("generator", "config", "weights")


def checkpoint_identity(directory: Path) -> str:
    """A short hash naming a checkpoint's model: its generator, config and the sha256 of
    every weight file, each checked against the file itself. Figures recorded later
    (evaluation, model card) do not change it."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    for rel, info in manifest["weights"].items():
        if cached_sha256(inside(directory, rel)) != info["sha256"]:
            raise CheckpointError(f"checkpoint {directory} is damaged: {rel} does not match the "
                                  "sha256 recorded in genkit.json (changed or corrupted)")
    return _identity(manifest)


def _identity(manifest: dict[str, Any]) -> str:
    core = {key: manifest.get(key) for key in IDENTITY_KEYS}
    return hashlib.sha256(json.dumps(core, sort_keys=True).encode()).hexdigest()[:16]


def load_weights_from(generator: GeneratorContract, path: Path) -> dict[str, Any]:
    """Load the (verified) weights of checkpoint ``path`` into ``generator`` to start a new
    run from them (``--init-from``); returns the origin to record."""
    directory = resolve_checkpoint_dir(path)
    manifest = read_manifest(directory)
    if manifest["generator"] != generator.name:
        raise CheckpointError(f"--init-from {path} holds a {manifest['generator']!r} model; "
                              f"it cannot start a {generator.name!r} run")
    present = [f for f in generator.weight_files(directory)
               if TRAINING_STATE not in f.relative_to(directory).parts]
    verify_weights(directory, manifest, present, model_int_dtypes(generator.modules()))
    try:
        generator.load_weights(directory)
    except CheckpointError:
        raise
    except Exception as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"--init-from {path}: its weights do not fit this model's config "
                              f"({first_line[:160]}); drop the --set values that change the "
                              "model's shape") from exc
    return {"path": str(path), "identity": _identity(manifest),
            "data": (manifest.get("training") or {}).get("data")}


def generator_identity(generator: GeneratorContract) -> str:
    """A short hash of the model: the identity of the checkpoint it was loaded from (as
    verified then), or a hash of its config and weights in memory."""
    if generator.source_identity is not None:
        return generator.source_identity
    digest = hashlib.sha256(json.dumps(config_to_dict(generator.config), sort_keys=True).encode())
    with generator.sampling_weights():
        for name, module in sorted(generator.modules().items()):
            for key, tensor in sorted(module.state_dict().items()):
                digest.update(f"{name}.{key}".encode())
                digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def load_checkpoint(path: str | Path, device: Any = "auto",
                    plugin: str | None = None) -> GeneratorContract:
    """Load a checkpoint (or run directory) onto ``device``.

    Args:
        path: a checkpoint directory, a run directory, or (with ``plugin``) a foreign
            directory the plugin can open itself (a plain diffusers pipeline); or a Hub
            id ``ORG/NAME[@REV]`` of any of these (see :mod:`genkit.hub`).
        device: ``auto``, ``cpu``, ``cuda:N``, ...
        plugin: the generator name to use when the directory has no ``genkit.json``.
    """
    raw = resolve_model_path(path, "checkpoint")
    torch_device = resolve_device(device)
    if plugin and raw.is_dir() and not (raw / MANIFEST).is_file() \
            and not (raw / FINAL_MODEL).is_dir() and not (raw / CHECKPOINTS).is_dir():
        generator = get_registry().generator(plugin).load_class().from_foreign_dir(raw, torch_device)
        generator.name = generator.name or plugin
        generator.source_dir = raw
        return generator
    directory = resolve_checkpoint_dir(raw)
    manifest = read_manifest(directory)
    name = manifest["generator"]
    if plugin and plugin != name:
        raise CheckpointError(f"{directory} holds a {name!r} model, not {plugin!r}; "
                              f"drop --plugin or use --plugin {name}")
    cls = get_registry().generator(name).load_class()
    config = config_from_dict(cls.Config, cls.saved_config(manifest["config"]),
                              what=f"{name} config in {directory}")
    generator = cls.named(name, config)
    present = [f for f in generator.weight_files(directory)
               if TRAINING_STATE not in f.relative_to(directory).parts]
    verify_weights(directory, manifest, present, model_int_dtypes(generator.modules()))
    generator.training_summary = manifest.get("training", {})
    generator.source_dir = directory
    generator.source_identity = _identity(manifest)
    generator.to(torch_device)
    try:
        generator.load_weights(directory)
    except CheckpointError:
        raise
    except Exception as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else ""
        raise CheckpointError(f"cannot read the weights of {directory}: "
                              f"{type(exc).__name__}: {first_line}") from exc
    generator.to(torch_device)  # what load_weights built (a tokenizer's model) too
    for module in generator.modules().values():
        module.eval()
    return generator
