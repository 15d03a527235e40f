"""Trusting a checkpoint only as far as it checks out.

Before genkit loads a checkpoint it checks ``genkit.json`` (field types, format version,
a depth limit) and every weight file it names: the path stays inside the checkpoint
(symlinks resolved), the size and sha256 match what was recorded, no unrecorded weight
file sits beside them, and the tensors are of floating-point or integer dtypes the model
can take. A file is hashed once per (path, size, mtime): the digest is cached in genkit's
cache folder, so a large model is not re-read on every load.

A message never reveals anything about a file outside the checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from genkit.errors import CheckpointError
from genkit.fs import atomic_write_text, sha256_file
from genkit.paths import cache_dir

MAX_DEPTH = 64  # nesting of genkit.json; deeper is not a checkpoint genkit wrote
FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")
_HASH_CACHE = "hashes.json"
_HASH_CACHE_ENTRIES = 4096

#: genkit.json fields and the JSON types they must have
FIELD_TYPES: dict[str, type | tuple[type, ...]] = {
    "format": str, "format_version": int, "generator": str, "modality": str,
    "config": dict, "weights": dict, "training": dict, "plugin": (dict, type(None)),
    "versions": dict, "evaluation": dict, "created": str,
}


def parse_manifest(text: str, file: Path) -> dict[str, Any]:
    """``genkit.json`` as a dict with fields of the right types, or a CheckpointError."""
    try:
        manifest = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else f"not valid JSON: {exc}"
        raise CheckpointError(f"{file} is damaged ({reason}); re-save the checkpoint or use "
                              "another one") from None
    if not isinstance(manifest, dict):
        raise CheckpointError(f"{file} is not a genkit checkpoint manifest")
    if _depth(manifest) > MAX_DEPTH:
        raise CheckpointError(f"{file} is damaged (nested more than {MAX_DEPTH} levels)")
    for key, types in FIELD_TYPES.items():
        if key in manifest and not (isinstance(manifest[key], types)
                                    and not isinstance(manifest[key], bool)):
            raise CheckpointError(f"{file} is damaged: {key!r} has the wrong type "
                                  f"({type(manifest[key]).__name__})")
    for rel, info in manifest.get("weights", {}).items():
        if not (isinstance(info, dict) and isinstance(info.get("bytes"), int)
                and not isinstance(info.get("bytes"), bool) and info["bytes"] >= 0
                and isinstance(info.get("sha256"), str)):
            raise CheckpointError(f"{file} is damaged: the record of {rel!r} needs 'bytes' "
                                  "(an integer) and 'sha256' (a string)")
    return manifest


def _depth(value: Any, level: int = 0) -> int:
    if level > MAX_DEPTH:
        return level
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level + 1)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level + 1)
    return level


def inside(directory: Path, rel: str) -> Path:
    """The file ``rel`` names inside ``directory``, or a CheckpointError when it names
    anything outside it (absolute, ``..``, or a symlink leading out; in a Hugging Face
    cache snapshot, links into the repository's own ``blobs/`` are inside)."""
    root = directory.resolve()
    candidate = Path(rel)
    if candidate.is_absolute() or ".." in candidate.parts or not candidate.parts:
        raise CheckpointError(f"checkpoint {directory} names a weight file outside itself "
                              f"({rel!r}); refusing to read it")
    path = root / candidate
    roots = [root]
    if root.parent.name == "snapshots" and root.parent.parent.name.startswith("models--"):
        roots.append(root.parent.parent / "blobs")  # the Hugging Face cache links files there
    if not any(path.resolve().is_relative_to(r) for r in roots):
        raise CheckpointError(f"checkpoint {directory}: {rel} is a link to a file outside the "
                              "checkpoint; refusing to read it (copy the file in instead)")
    return path


def verify_weights(directory: Path, manifest: dict[str, Any], present: list[Path],
                   int_dtypes: set[str]) -> None:
    """Check every recorded weight file (inside, size, sha256, dtypes), and that the
    weight files ``present`` in the directory are exactly the recorded ones.

    ``int_dtypes``: the integer dtypes the model itself holds (safetensors names such as
    ``"I64"``); any other non-float tensor in a weight file is refused.
    """
    recorded = manifest["weights"]
    if not recorded:
        raise CheckpointError(f"checkpoint {directory} records no weight files; it is damaged")
    for rel, info in recorded.items():
        path = inside(directory, rel)
        if not path.is_file():
            raise CheckpointError(f"checkpoint {directory} is incomplete: {rel} is missing")
        size = path.stat().st_size
        if size != info["bytes"]:
            raise CheckpointError(f"checkpoint {directory} is damaged: {rel} has {size} bytes, "
                                  f"expected {info['bytes']} (truncated?)")
        if cached_sha256(path) != info["sha256"]:
            raise CheckpointError(f"checkpoint {directory} is damaged: {rel} does not match the "
                                  "sha256 recorded in genkit.json (changed or corrupted)")
        check_dtypes(path, rel, directory, int_dtypes)
    known = {Path(r).as_posix() for r in recorded}
    extra = sorted(p.relative_to(directory).as_posix() for p in present)
    extra = [rel for rel in extra if rel not in known]
    if extra:
        raise CheckpointError(f"checkpoint {directory} holds weight files genkit.json does not "
                              f"record ({', '.join(extra[:3])}); it is damaged or mixed up")


def check_dtypes(path: Path, rel: str, directory: Path, int_dtypes: set[str]) -> None:
    """Every tensor of a weight file is floating point, or of an integer dtype the model
    itself holds (a buffer such as position ids)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            dtypes = {fh.get_slice(k).get_dtype() for k in fh.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {directory}: {rel} is not a readable safetensors file "
                              f"({' '.join(str(exc).split())[:120]})") from None
    odd = sorted(d for d in dtypes if d not in FLOAT_DTYPES and d not in int_dtypes)
    if odd:
        raise CheckpointError(f"checkpoint {directory}: {rel} holds {', '.join(odd)} tensors, "
                              "not model weights; it is damaged")


def cached_sha256(path: Path) -> str:
    """sha256 of ``path``, from the cache when the file's path, size and mtime are known."""
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    cache = _read_cache()
    if key in cache:
        return cache[key]
    digest = sha256_file(path)
    cache[key] = digest
    _write_cache(dict(list(cache.items())[-_HASH_CACHE_ENTRIES:]))
    return digest


def _read_cache() -> dict[str, str]:
    with contextlib.suppress(OSError, ValueError):
        data = json.loads((cache_dir() / _HASH_CACHE).read_text(encoding="utf-8"))
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if isinstance(v, str)}
    return {}


def _write_cache(cache: dict[str, str]) -> None:
    with contextlib.suppress(OSError):  # a cache that cannot be written only costs time
        os.makedirs(cache_dir(), exist_ok=True)
        atomic_write_text(cache_dir() / _HASH_CACHE, json.dumps(cache))


def model_int_dtypes(modules: dict[str, Any]) -> set[str]:
    """The safetensors names of the non-float dtypes a model's state holds."""
    names = {"torch.int64": "I64", "torch.int32": "I32", "torch.int16": "I16",
             "torch.int8": "I8", "torch.uint8": "U8", "torch.bool": "BOOL"}
    return {names[str(t.dtype)] for m in modules.values() for t in m.state_dict().values()
            if str(t.dtype) in names}
