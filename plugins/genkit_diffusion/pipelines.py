"""Sample any local diffusers pipeline directory that genkit did not write (no genkit.json).

``genkit sample --plugin diffusion --checkpoint DIR`` reaches :func:`load_pipeline_dir`
through ``DiffusionGenerator.from_foreign_dir``. The directory is opened the way a careful
diffusers user opens one: ``DiffusionPipeline.from_pretrained(DIR, local_files_only=True,
use_safetensors=True)``, with no remote code and no custom pipeline. Before that,
``model_index.json`` is checked: the pipeline class must be one of diffusers' own and
every component must come from diffusers or transformers, so nothing in the directory
can name code to run.

Unconditional pipelines (``DDPMPipeline``, ``DDIMPipeline``, ...) take no condition;
text-to-image pipelines (Stable Diffusion and friends) take ``--prompt``. Sample i gets
its own ``torch.Generator`` seeded from (seed, i), passed to the pipeline as a list.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from genkit.plugin import (
    CheckpointError,
    ConfigError,
    Generator,
    check,
    quiet_progress,
    remote_code_reason,
    resolve_device,
    sample_generators,
)
from genkit_diffusion.edit_pipelines import PipelineEditing

ALLOWED_LIBRARIES = ("diffusers", "transformers")
SCHEDULER_NAMES = ("ddpm", "ddim", "dpm++", "euler")


@dataclasses.dataclass
class ForeignPipelineConfig:
    """Where the pipeline lives and a fingerprint of its files (its identity in manifests)."""

    path: str = ""
    fingerprint: str = ""


@dataclasses.dataclass
class ForeignSampleOptions:
    """Sampling options of a foreign pipeline; None keeps the pipeline's own default."""

    scheduler: str | None = None  # ddpm | ddim | dpm++ | euler (None: the saved one)
    steps: int | None = None  # denoising steps (None: 50)
    guidance_scale: float | None = None  # text-to-image classifier-free guidance
    negative_prompt: str | None = None  # text-to-image: what to steer away from

    def __post_init__(self) -> None:
        check(self.scheduler is None or self.scheduler in SCHEDULER_NAMES,
              f"unknown scheduler {self.scheduler!r}; use one of {', '.join(SCHEDULER_NAMES)}")
        check(self.steps is None or self.steps > 0,
              f"steps must be a positive number of denoising steps, got {self.steps}")
        check(self.guidance_scale is None or self.guidance_scale >= 0,
              "guidance_scale must be >= 0")


class PipelineGenerator(PipelineEditing, Generator):
    """A genkit generator that samples a diffusers pipeline in place (sampling only)."""

    Config = ForeignPipelineConfig
    SampleOptions = ForeignSampleOptions
    modality: ClassVar[str] = "image"
    conditions: ClassVar[tuple[str, ...]] = ("prompt",)
    default_steps: ClassVar[int] = 50

    config: ForeignPipelineConfig

    def build(self) -> None:
        """Open the pipeline directory on the CPU (``to`` moves it)."""
        self.pipe = open_pipeline(Path(self.config.path))
        self.pipe.set_progress_bar_config(disable=True)
        self._takes_prompt = "prompt" in inspect.signature(self.pipe.__call__).parameters

    def accepted_conditions(self) -> tuple[str, ...]:
        return ("prompt",) if self._takes_prompt else ()

    def to(self, device: Any) -> PipelineGenerator:
        self._device = resolve_device(device)
        self.pipe.to(self._device)
        return self

    def generate(self, seeds: list[int], conditions: list[dict[str, Any]], options: Any,
                 stream: Callable[[str], None] | None = None) -> list[Any]:
        """One batch through the pipeline's own ``__call__``, one generator per sample."""
        if not isinstance(options, ForeignSampleOptions):
            options = self.options(dict(options or {}))
        return run_pipeline(self.pipe, seeds, conditions, self.device, self.config.path,
                            scheduler=options.scheduler, steps=options.steps or self.default_steps,
                            guidance_scale=options.guidance_scale,
                            negative_prompt=options.negative_prompt)

    def make_dataset(self, data: Any, split: str) -> Any:
        raise ConfigError("a diffusers pipeline directory without genkit.json can only be "
                          "sampled; train a genkit model with: genkit train --plugin diffusion")

    def save_weights(self, directory: Path) -> None:
        raise CheckpointError(f"{self.config.path} is a plain diffusers pipeline and is sampled "
                              "in place; copy the directory instead of saving it with genkit")


def run_pipeline(pipe: Any, seeds: list[int], conditions: list[dict[str, Any]], device: Any,
                 name: str, *, scheduler: str | None, steps: int,
                 guidance_scale: float | None = None, negative_prompt: str | None = None,
                 eta: float | None = None) -> list[Any]:
    """Images from a diffusers pipeline's own ``__call__``: sample i draws only from its
    seed (a list of generators), prompts for text-to-image pipelines. ``scheduler``
    (a genkit name) replaces the pipeline's for this call only; None keeps its own."""
    takes_prompt = "prompt" in inspect.signature(pipe.__call__).parameters
    kwargs: dict[str, Any] = {"generator": sample_generators(seeds, device),
                              "num_inference_steps": steps, "output_type": "pil"}
    if takes_prompt:
        kwargs["prompt"] = [str((c or {}).get("prompt", "")) for c in
                            (conditions or [{}] * len(seeds))]
        if guidance_scale is not None:
            kwargs["guidance_scale"] = guidance_scale
        if negative_prompt is not None:
            kwargs["negative_prompt"] = [negative_prompt] * len(seeds)
    else:
        if any((c or {}).get("prompt") for c in conditions):
            raise ConfigError(f"{name} is an unconditional pipeline; drop --prompt")
        kwargs["batch_size"] = len(seeds)
    saved = pipe.scheduler
    if scheduler is not None:
        from genkit_diffusion.sampler import make_scheduler

        pipe.scheduler = make_scheduler(scheduler, saved.config)
    if eta is not None and "eta" in inspect.signature(pipe.__call__).parameters:
        kwargs["eta"] = eta
    try:
        return list(pipe(**kwargs).images)
    finally:
        pipe.scheduler = saved


def load_pipeline_dir(path: str | Path, device: Any = "auto") -> PipelineGenerator:
    """A :class:`PipelineGenerator` for the diffusers pipeline directory ``path`` on ``device``.

    Args:
        path: a directory written by ``DiffusionPipeline.save_pretrained`` (safetensors).
        device: ``auto``, ``cpu``, ``cuda:N``, ...

    Returns:
        A generator whose ``generate``/``sample`` draw from the pipeline with per-sample seeds.
    """
    path = Path(path).expanduser()
    check_model_index(path)
    generator = PipelineGenerator(path=str(path), fingerprint=fingerprint(path))
    generator.name = "diffusion"
    generator.source_dir = path
    return generator.to(device)


def check_model_index(path: Path) -> dict[str, Any]:
    """Read ``model_index.json`` and refuse anything that would run code from the directory."""
    import diffusers

    index_file = path / "model_index.json"
    if not index_file.is_file():
        raise CheckpointError(f"{path} is neither a genkit checkpoint (genkit.json) nor a "
                              "diffusers pipeline directory (model_index.json)")
    try:
        index = json.loads(index_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{index_file} is damaged ({exc}); re-save the pipeline") from None
    name = index.get("_class_name")
    pipeline_cls = getattr(diffusers, str(name), None)
    if not (isinstance(pipeline_cls, type) and issubclass(pipeline_cls, diffusers.DiffusionPipeline)):
        raise CheckpointError(f"{index_file} names pipeline {name!r}, which is not one of "
                              "diffusers' own; custom pipeline code is never run")
    reason = remote_code_reason(path)  # components from other libraries, auto_map configs
    if reason:
        raise CheckpointError(f"{path} needs remote code ({reason}); only "
                              f"{' and '.join(ALLOWED_LIBRARIES)} components are loaded")
    return index


def open_pipeline(path: Path) -> Any:
    """``DiffusionPipeline.from_pretrained`` offline, safetensors only, no remote code."""
    from diffusers import DiffusionPipeline

    check_model_index(path)
    try:
        with quiet_progress():
            return DiffusionPipeline.from_pretrained(str(path), local_files_only=True,
                                                     use_safetensors=True, trust_remote_code=False)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"cannot open the diffusers pipeline {path}: {first} (it must hold "
                              "safetensors weights and every component file)") from exc


def fingerprint(path: Path) -> str:
    """A short hash of the directory's config files and weight-file sizes: cheap to compute,
    and it changes when the pipeline is replaced."""
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = file.relative_to(path).as_posix()
        digest.update(rel.encode())
        if file.suffix == ".json" or file.name.endswith(".txt"):
            digest.update(file.read_bytes())
        else:
            digest.update(str(file.stat().st_size).encode())
    return digest.hexdigest()[:16]
