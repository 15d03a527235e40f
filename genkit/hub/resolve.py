"""Hugging Face Hub ids wherever genkit takes a model directory.

``--checkpoint``, ``--set base=`` and the plugins' own loaders all take "a directory or a
Hub id", so the rule lives once, here in the base layer, and every caller resolves the
same way: :func:`resolve_model_path` turns ``ORG/NAME[@REVISION]`` into a local snapshot
folder of the Hugging Face cache and returns any other path unchanged.

- **A local path that exists always wins**: ``runs/d`` is a directory if there is one,
  and only otherwise a Hub id.
- **Only what genkit loads is fetched**, in two steps: first the config and tokenizer
  files (``*.json``, ``*.txt``, ``*.model``), which are checked for remote code; then the
  safetensors weights those configs name (a genkit checkpoint's recorded weight files, a
  diffusers pipeline's component folders, a transformers model's ``model*.safetensors``,
  a peft adapter's ``adapter_model.safetensors``). Pickle files (``.bin``, ``.ckpt``) are
  never fetched, and neither are fp16/non-EMA variants.
- **Never remote code**: a repo whose configs name code (``auto_map``, a custom pipeline
  class, a component from a library other than diffusers/transformers) is refused in one
  line before any weight is downloaded.
- **The environment is read at call time**, as ``huggingface_hub`` reads it at import:
  ``HF_HUB_CACHE`` / ``HF_HOME`` (where the cache is), ``HF_HUB_OFFLINE`` (cache only,
  never the network), ``HF_TOKEN`` (private and gated repos; read by huggingface_hub).

Every failure is one :class:`HubError` line that names the id: not in the cache while
offline, no such repo or revision, gated, unreachable, remote code, no safetensors.
``huggingface_hub`` is imported inside the functions: this module is imported at start-up.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
from pathlib import Path
from typing import Any

from genkit.errors import GenkitError


class HubError(GenkitError):
    """A Hub id that cannot be resolved: unknown, not cached offline, gated, remote code."""


#: ``ORG/NAME`` or ``ORG/NAME@REVISION`` (a branch, tag or commit; may contain ``/``)
_ID = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*)(?:@(?P<rev>[^\s@]+))?$")
CONFIG_PATTERNS = ("*.json", "*.txt", "*.model")
#: variants and pickles that a plain load never reads
IGNORE_PATTERNS = ("*.fp16.safetensors", "*.bf16.safetensors", "*non_ema*", "*.bin", "*.ckpt",
                   "*.pt", "*.pth", "*.pkl", "*.msgpack", "*.h5", "*.onnx", "*.py")
#: config files whose ``auto_map`` would make transformers import code from the repo
_CODE_CONFIGS = ("config.json", "tokenizer_config.json", "preprocessor_config.json",
                 "processor_config.json", "adapter_config.json", "generation_config.json")
_LIBRARIES = ("diffusers", "transformers")
_TRUE = ("1", "ON", "YES", "TRUE")


@dataclasses.dataclass(frozen=True)
class ModelId:
    """A parsed Hub id: the repository and an optional revision."""

    repo: str
    revision: str | None = None

    def __str__(self) -> str:
        return self.repo + (f"@{self.revision}" if self.revision else "")


def parse_model_id(spec: str | os.PathLike[str]) -> ModelId | None:
    """The Hub id ``spec`` spells, or None when it can only be a local path (``./x``,
    ``/x``, ``~/x``, ``a/b/c``, names the Hub refuses)."""
    text = str(spec).strip()
    if not text or text.startswith((".", "/", "~")) or "\\" in text:
        return None
    match = _ID.match(text)
    if match is None:
        return None
    repo = match["repo"]
    if "--" in repo or ".." in repo or repo.endswith((".", "-")) or len(repo) > 96:
        return None
    return ModelId(repo, match["rev"])


def hub_id_of(spec: str | None) -> ModelId | None:
    """``spec`` as a Hub id when it is one and no local path of that name exists (the
    same choice :func:`resolve_model_path` makes); for model cards and adapter configs."""
    if not spec or Path(str(spec)).expanduser().exists():
        return None
    return parse_model_id(spec)


def hub_cache() -> Path:
    """The Hugging Face cache folder, read from the environment now: ``HF_HUB_CACHE``,
    else ``HF_HOME/hub``, else ``~/.cache/huggingface/hub``."""
    env = os.environ
    for key in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if env.get(key):
            return Path(env[key]).expanduser()
    home = env.get("HF_HOME") or os.path.join(env.get("XDG_CACHE_HOME") or "~/.cache",
                                              "huggingface")
    return Path(home).expanduser() / "hub"


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` forbids the network (read now, not at import)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in _TRUE


def resolve_model_path(spec: str | os.PathLike[str], what: str = "model") -> Path:
    """A local directory for ``spec``: the path itself when it exists (or cannot be a Hub
    id), else the cached snapshot of Hub id ``ORG/NAME[@REVISION]``, fetched when online.

    Args:
        spec: a path, or a Hub id with an optional revision.
        what: how messages name it (``"checkpoint"``, ``"base model"``).

    Raises:
        HubError: one line naming the id (offline and not cached, unknown repo or
            revision, gated, remote code, no safetensors weights).
    """
    path = Path(spec).expanduser()
    if path.exists():
        return path
    model_id = parse_model_id(spec)
    if model_id is None:
        return path
    return _fetch(model_id, what)


def _fetch(model_id: ModelId, what: str) -> Path:
    """The two-step download (configs, checked; then the weights they name)."""
    label = f"{what} {model_id}"
    kwargs: dict[str, Any] = {"repo_id": model_id.repo, "revision": model_id.revision,
                              "cache_dir": str(hub_cache()), "local_files_only": hub_offline()}
    with _hub_errors(model_id, what):
        snapshot = Path(_snapshot(allow_patterns=list(CONFIG_PATTERNS), **kwargs))
        check_no_remote_code(snapshot, label)
        weights = weight_patterns(snapshot, label)
        snapshot = Path(_snapshot(allow_patterns=[*CONFIG_PATTERNS, *weights],
                                  ignore_patterns=list(IGNORE_PATTERNS), **kwargs))
    _check_weights_present(snapshot, weights, model_id, label)
    return snapshot


def _snapshot(**kwargs: Any) -> str:
    from huggingface_hub import snapshot_download

    return snapshot_download(**kwargs)


def weight_patterns(snapshot: Path, label: str) -> list[str]:
    """The weight files to fetch, from the configs already in ``snapshot``."""
    manifest = _read_json(snapshot / "genkit.json", label)
    if manifest is not None:
        weights = manifest.get("weights")
        if not isinstance(weights, dict) or not weights:
            raise HubError(f"{label}: its genkit.json records no weight files; it is damaged")
        return sorted(str(rel) for rel in weights)
    index = _read_json(snapshot / "model_index.json", label)
    if index is not None:
        return sorted(f"{key}/*.safetensors" for key, value in index.items()
                      if not key.startswith("_") and isinstance(value, list) and value[:1] != [None])
    if (snapshot / "adapter_config.json").is_file():
        return ["adapter_model.safetensors"]
    if (snapshot / "config.json").is_file():
        return ["model*.safetensors"]
    raise HubError(f"{label} is not a genkit checkpoint, diffusers pipeline, transformers model "
                   "or peft adapter (it has no genkit.json, model_index.json, config.json or "
                   "adapter_config.json)")


def _check_weights_present(snapshot: Path, patterns: list[str], model_id: ModelId,
                           label: str) -> None:
    """Every recorded genkit weight file, or at least one safetensors file, is there."""
    found = any(snapshot.rglob("*.safetensors"))
    exact = [p for p in patterns if "*" not in p]
    missing = [rel for rel in exact if not (snapshot / rel).is_file()]
    if not missing and found:
        return
    if hub_offline():
        raise HubError(f"{label}: only its config files are in the Hugging Face cache "
                       f"({hub_cache()}), not its weights, and HF_HUB_OFFLINE is set; unset it "
                       f"to download them (hf download {model_id.repo})")
    if missing:
        raise HubError(f"{label} is incomplete on the Hub: {', '.join(missing[:3])} is missing")
    raise HubError(f"{label} has no safetensors weights; genkit never loads pickle files "
                   "(.bin, .ckpt): use a repo with .safetensors weights")


# ----------------------------------------------------------------------------- remote code
def remote_code_reason(directory: Path) -> str | None:
    """Why loading ``directory`` would run code that is not diffusers' or transformers'
    own (``auto_map`` in a config, a custom pipeline, a component from another library),
    or None when it would not."""
    directory = Path(directory)
    for config in sorted(p for name in _CODE_CONFIGS for p in directory.glob(f"**/{name}")):
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(config.read_text(encoding="utf-8"))
            if isinstance(data, dict) and data.get("auto_map"):
                return f"{config.relative_to(directory).as_posix()} has an auto_map (custom code)"
    index_file = directory / "model_index.json"
    if not index_file.is_file():
        return None
    try:
        index = json.loads(index_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # a damaged index is the pipeline loader's to report
    if not isinstance(index, dict):
        return None
    if not isinstance(index.get("_class_name", ""), str) or index.get("_custom_pipeline"):
        return "model_index.json names a custom pipeline"
    for key, value in index.items():
        if key.startswith("_") or not isinstance(value, list) or value[:1] == [None]:
            continue
        if len(value) != 2 or not _known_library(str(value[0])):
            return (f"model_index.json: component {key!r} comes from {value[0]!r}, not from "
                    f"{' or '.join(_LIBRARIES)}")
    return None


def _known_library(name: str) -> bool:
    """diffusers, transformers, or one of diffusers' own pipeline modules (Stable
    Diffusion's index names its safety checker's module ``stable_diffusion``)."""
    if name in _LIBRARIES:
        return True
    if not re.fullmatch(r"[a-z0-9_]+", name):
        return False
    import importlib.util

    with contextlib.suppress(ImportError, ValueError):
        return importlib.util.find_spec(f"diffusers.pipelines.{name}") is not None
    return False


def check_no_remote_code(directory: Path, label: str) -> None:
    """Raise a one-line :class:`HubError` when ``directory`` would need remote code."""
    reason = remote_code_reason(directory)
    if reason:
        raise HubError(f"{label} needs remote code ({reason}); genkit never runs code from "
                       "a model repo (no trust_remote_code)")


def _read_json(file: Path, label: str) -> dict[str, Any] | None:
    if not file.is_file():
        return None
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise HubError(f"{label}: {file.name} is damaged ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise HubError(f"{label}: {file.name} is damaged (not a JSON object)")
    return data


# ----------------------------------------------------------------------------- errors
def cached_revisions(repo: str) -> list[str]:
    """The branch and tag names of ``repo`` in the cache (``refs/``), sorted."""
    refs = hub_cache() / f"models--{repo.replace('/', '--')}" / "refs"
    if not refs.is_dir():
        return []
    return sorted(p.relative_to(refs).as_posix() for p in refs.rglob("*") if p.is_file())


@contextlib.contextmanager
def _hub_errors(model_id: ModelId, what: str):  # -> Iterator[None]
    """huggingface_hub's exceptions as one line each that names the id."""
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    label = f"{what} {model_id}"
    try:
        yield
    except HubError:
        raise
    except RevisionNotFoundError:
        raise HubError(f"{what} {model_id.repo} has no revision {model_id.revision!r} on the "
                       "Hugging Face Hub; give a branch, tag or commit that exists") from None
    except GatedRepoError:
        raise HubError(f"{label} is gated: accept its terms on huggingface.co and set HF_TOKEN "
                       "to a token of that account") from None
    except RepositoryNotFoundError:
        raise HubError(f"{label} does not exist: no such local directory, and no such model "
                       "repo on the Hugging Face Hub (a private repo needs HF_TOKEN)") from None
    except LocalEntryNotFoundError as exc:
        raise HubError(_not_cached(model_id, what, exc)) from None
    except HFValidationError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise HubError(f"{label} is not a valid Hub id ({first})") from None
    except (HfHubHTTPError, OSError) as exc:
        first = " ".join(str(exc).split())[:160]
        raise HubError(f"cannot fetch {label} from the Hugging Face Hub: "
                       f"{type(exc).__name__}: {first}") from None


def _not_cached(model_id: ModelId, what: str, exc: Exception) -> str:
    """The one line for an id the cache cannot serve (offline, or the Hub unreachable)."""
    label = f"{what} {model_id}"
    cached = cached_revisions(model_id.repo)
    if type(exc).__name__ == "IncompleteSnapshotError":
        return (f"{label} is only partly in the Hugging Face cache ({hub_cache()}); go online "
                f"once to complete it (hf download {model_id.repo})")
    if cached and model_id.revision and model_id.revision not in cached:
        return (f"{what} {model_id.repo} has no revision {model_id.revision!r} in the Hugging "
                f"Face cache (cached: {', '.join(cached)}); give one of those, or go online")
    if hub_offline():
        return (f"{label} is not a local directory and not in the Hugging Face cache "
                f"({hub_cache()}), and HF_HUB_OFFLINE is set; unset it to download it, or fetch "
                f"it first (hf download {model_id.repo})")
    return (f"cannot reach the Hugging Face Hub to fetch {label}, and it is not in the cache "
            f"({hub_cache()}); check the connection")
