"""Planning and drawing samples: conditions, per-sample seeds and aligned batches.

Sample i of a run is drawn from randomness seeded by (seed, i) alone, so it is the same
whatever the batch size (up to floating-point batch effects), resume point or number of
processes. Batches are aligned to multiples of the batch size (batch b holds indices
``b*B .. b*B+B-1``), so with the same batch size a resumed or sharded run is
byte-identical to a single uninterrupted one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from genkit.contract import GeneratorContract
from genkit.errors import SamplingError
from genkit.seeding import check_label, sample_seed

MAX_SAMPLES = 10**9  # one run, one folder: more is a mistake (or several runs)
CONDITION_KEYS = ("label", "labels", "labels_file", "prompt", "prompts", "prompts_file",
                  "per_condition")


@dataclasses.dataclass
class Sample:
    """One generated sample and where it came from."""

    index: int
    seed: int
    conditions: dict[str, Any]
    output: Any  # PIL.Image.Image or str


@dataclasses.dataclass
class SamplePlan:
    """How many samples, each one's conditions, and the validated sampling options."""

    n: int
    conditions: list[dict[str, Any]]  # cycled over, or blocks of ``per_condition``
    per_condition: int | None
    options: Any

    def condition(self, index: int) -> dict[str, Any]:
        if not self.conditions:
            return {}
        if self.per_condition:
            return dict(self.conditions[index // self.per_condition])
        return dict(self.conditions[index % len(self.conditions)])


def _read_lines(path: str, what: str) -> list[str]:
    try:
        lines = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines()]
    except OSError as exc:
        raise SamplingError(f"cannot read {what} file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise SamplingError(f"{what} file {path} is not UTF-8 text (byte {exc.start}); save it "
                            "as UTF-8") from None
    lines = [line for line in lines if line]
    if not lines:
        raise SamplingError(f"{what} file {path} is empty")
    return lines


def _as_labels(values: Iterable[Any]) -> list[int]:
    labels = []
    for v in values:
        try:
            labels.append(int(str(v).strip()))
        except ValueError:
            raise SamplingError(f"labels must be integers, got {v!r}") from None
    return labels


def plan_samples(generator: GeneratorContract, n: int | None, kwargs: dict[str, Any]) -> SamplePlan:
    """Split keyword arguments into conditions and options, and check both."""
    conds = {k: kwargs.pop(k) for k in CONDITION_KEYS if kwargs.get(k) is not None}
    for k in CONDITION_KEYS:
        kwargs.pop(k, None)
    per_condition = conds.pop("per_condition", None)
    labels: list[int] = []
    if "label" in conds:
        labels = _as_labels([conds["label"]])
    if "labels" in conds:
        raw = conds["labels"]
        labels += _as_labels(raw.split(",") if isinstance(raw, str) else raw)
    if "labels_file" in conds:
        labels += _as_labels(_read_lines(conds["labels_file"], "labels"))
    prompts: list[str] = []
    if "prompt" in conds:
        prompts = [str(conds["prompt"])]
    if "prompts" in conds:
        prompts += list(conds["prompts"])
    if "prompts_file" in conds:
        prompts += _read_lines(conds["prompts_file"], "prompts")
    accepted = generator.accepted_conditions()
    for key, values in (("label", labels), ("prompt", prompts)):
        if values and key not in accepted:
            takes = ", ".join(accepted) or "no conditions"
            hint = " (train it with --set num_classes=N to condition on labels)" if key == "label" else ""
            raise SamplingError(f"generator {generator.name!r} does not take a {key}; "
                                f"it takes: {takes}{hint}")
    num_classes = getattr(generator.config, "num_classes", None)
    if num_classes:
        for label in labels:
            check_label(label, num_classes)
    if labels and prompts:
        conditions = [{"label": lab, "prompt": p} for lab in labels for p in prompts]
    else:
        conditions = [{"label": lab} for lab in labels] or [{"prompt": p} for p in prompts]
    if per_condition is not None:
        per_condition = int(per_condition)
        if per_condition < 1:
            raise SamplingError("--per-condition must be at least 1")
        if not conditions:
            raise SamplingError("--per-condition needs --labels or --prompts")
        total = per_condition * len(conditions)
        if n is not None and n != total:
            raise SamplingError(f"-n {n} disagrees with --per-condition {per_condition} x "
                                f"{len(conditions)} conditions = {total}; give only one of them")
        n = total
    n = 1 if n is None else int(n)
    if n < 1:
        raise SamplingError(f"-n must be at least 1, got {n}")
    if n > MAX_SAMPLES:
        raise SamplingError(f"-n {n:,} is more than one run takes ({MAX_SAMPLES:,}); split it "
                            "into several runs with their own --out")
    options = generator.options(kwargs)
    return SamplePlan(n, conditions, per_condition, options)


def resolve_batch_size(generator: GeneratorContract, batch_size: int | None) -> int:
    """The generation batch size: the caller's, else the family's default, else 64 for
    images and 16 for text."""
    if batch_size is None:
        batch_size = generator.default_sample_batch_size or \
            (64 if generator.modality == "image" else 16)
    batch_size = int(batch_size)
    if batch_size < 1:
        raise SamplingError(f"--batch-size must be at least 1, got {batch_size}")
    return batch_size


def aligned_batches(indices: Iterable[int], batch_size: int) -> Iterator[list[int]]:
    """Group sorted indices by ``index // batch_size``: batches line up with those of a
    full run whatever was skipped, which keeps resumed runs byte-identical."""
    batch: list[int] = []
    current = None
    for i in indices:
        if batch and (i // batch_size != current):
            yield batch
            batch = []
        current = i // batch_size
        batch.append(i)
    if batch:
        yield batch


def generate_batches(generator: GeneratorContract, plan: SamplePlan, seed: int, batch_size: int,
                     indices: Iterable[int], stream: Callable[[str], None] | None = None,
                     ) -> Iterator[list[Sample]]:
    """Yield lists of samples, one per aligned batch of ``indices``."""
    with generator.inference():
        for batch in aligned_batches(indices, batch_size):
            seeds = [sample_seed(seed, i) for i in batch]
            conditions = [plan.condition(i) for i in batch]
            outputs = generator.generate(seeds, conditions, plan.options,
                                         stream=stream if batch[0] == 0 else None)
            if len(outputs) != len(batch):
                raise SamplingError(f"generator {generator.name!r} returned {len(outputs)} "
                                    f"samples for a batch of {len(batch)}")
            yield [Sample(i, s, c, o) for i, s, c, o in zip(batch, seeds, conditions, outputs)]


def write_extras(generator: GeneratorContract, options: Any, seed: int,
                 out: Path | None) -> list[Path]:
    """Run the generator's side outputs (trajectory, interpolation strip) in sampling mode:
    eval mode, inference mode and EMA weights, as for the samples themselves."""
    with generator.inference():
        return list(generator.write_extras(options, seed, out))


def iter_samples(generator: GeneratorContract, n: int | None = None, seed: int = 0,
                 batch_size: int | None = None, stream: Callable[[str], None] | None = None,
                 **kwargs: Any) -> Iterator[Sample]:
    """Yield ``n`` samples in index order (the iterator form of batch generation)."""
    plan = plan_samples(generator, n, kwargs)
    batch_size = resolve_batch_size(generator, batch_size)
    for samples in generate_batches(generator, plan, seed, batch_size, range(plan.n), stream):
        yield from samples


