"""Batch generation for every plugin: per-sample seeds, batching, sharding, writers, resume.

Sample i of a run is drawn from randomness seeded by (seed, i) alone, so it is the same
whatever the batch size (up to floating-point batch effects), resume point or number of
processes. Batches are aligned to multiples of the batch size, so with the same batch
size a resumed or sharded run is byte-identical to a single uninterrupted one.

An output directory holds one file per sample (``000042.png``), ``manifest.jsonl`` (one
JSON line per finished sample: index, seed, file, conditions, checkpoint identity) and
``run.json`` (what the run was asked for). Files are written under a temporary name and
renamed; a sample enters the manifest only after its file is complete, so rerunning the
same command after a crash or Ctrl-C produces exactly the missing samples.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genkit.checkpoint import atomic_write_bytes, atomic_write_text, checkpoint_identity
from genkit.config import config_to_dict
from genkit.errors import ConfigError, SamplingError
from genkit.seeding import sample_seed

if TYPE_CHECKING:
    from PIL import Image

    from genkit.generator import Generator

IMAGE_FORMATS = ("png", "npy")
TEXT_FORMATS = ("jsonl", "txt")
RUN_FILE = "run.json"
MANIFEST = "manifest.jsonl"
TEXT_FILE = "samples.jsonl"
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


@dataclasses.dataclass
class SampleReport:
    """What :func:`sample_to` did."""

    out: str
    written: int
    skipped: int
    seconds: float
    samples_per_second: float
    files: list[str]

    def summary(self) -> str:
        return (f"wrote {self.written} samples, skipped {self.skipped} already done, in "
                f"{self.seconds:.1f} s ({self.samples_per_second:.1f} samples/s) -> {self.out}")


# ---------------------------------------------------------------------------- planning
def _read_lines(path: str, what: str) -> list[str]:
    try:
        lines = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines()]
    except OSError as exc:
        raise SamplingError(f"cannot read {what} file {path}: {exc.strerror or exc}") from None
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


def plan_samples(generator: Generator, n: int | None, kwargs: dict[str, Any]) -> SamplePlan:
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
    for label in labels:
        if num_classes and not 0 <= label < num_classes:
            raise SamplingError(f"label {label} is out of range: this model has {num_classes} "
                                f"classes (0 to {num_classes - 1})")
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
    options = generator.options(kwargs)
    return SamplePlan(n, conditions, per_condition, options)


def _default_batch_size(generator: Generator) -> int:
    return int(getattr(generator, "default_sample_batch_size", 0) or
               (64 if generator.modality == "image" else 16))


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


def generate_batches(generator: Generator, plan: SamplePlan, seed: int, batch_size: int,
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


def write_extras(generator: Generator, options: Any, seed: int, out: Path | None) -> list[Path]:
    """Run the generator's side outputs (trajectory, interpolation strip) in sampling mode:
    eval mode, inference mode and EMA weights, as for the samples themselves."""
    with generator.inference():
        return list(generator.write_extras(options, seed, out))


def iter_samples(generator: Generator, n: int | None = None, seed: int = 0,
                 batch_size: int | None = None, stream: Callable[[str], None] | None = None,
                 **kwargs: Any) -> Iterator[Sample]:
    """Yield ``n`` samples in index order (the iterator form of batch generation)."""
    plan = plan_samples(generator, n, kwargs)
    batch_size = _default_batch_size(generator) if batch_size is None else int(batch_size)
    if batch_size < 1:
        raise SamplingError(f"--batch-size must be at least 1, got {batch_size}")
    for samples in generate_batches(generator, plan, seed, batch_size, range(plan.n), stream):
        yield from samples


# ----------------------------------------------------------------------------- writers
def encode_sample(output: Any, fmt: str) -> bytes:
    """The bytes of one sample file in ``fmt`` (png, npy, txt)."""
    if fmt == "png":
        buf = io.BytesIO()
        output.save(buf, format="PNG")
        return buf.getvalue()
    if fmt == "npy":
        import numpy as np

        buf = io.BytesIO()
        np.save(buf, np.asarray(output), allow_pickle=False)
        return buf.getvalue()
    if fmt == "txt":
        return str(output).encode("utf-8")
    raise ConfigError(f"unknown format {fmt!r}")


def make_grid(images: Sequence[Image.Image], columns: int | None = None,
              padding: int = 2) -> Image.Image:
    """A contact sheet of ``images`` (all the size of the first one)."""
    from PIL import Image

    if not images:
        raise SamplingError("no images to put in a grid")
    columns = columns or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    w, h = images[0].size
    mode = "RGB" if any(im.mode != "L" for im in images) else "L"
    sheet = Image.new(mode, (columns * (w + padding) + padding, rows * (h + padding) + padding),
                      color=0)
    for k, im in enumerate(images):
        r, c = divmod(k, columns)
        sheet.paste(im.convert(mode), (padding + c * (w + padding), padding + r * (h + padding)))
    return sheet


def save_grid(images: Sequence[Image.Image], path: str | Path, scale: int | None = None) -> Path:
    """Write a grid PNG atomically, upscaled (nearest) so small images stay visible."""
    from PIL import Image

    grid = make_grid(images)
    if scale is None:
        scale = max(1, 256 // max(1, images[0].size[0] * math.ceil(math.sqrt(len(images)))))
    if scale > 1:
        grid = grid.resize((grid.width * scale, grid.height * scale), Image.NEAREST)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    grid.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
    return path


# ------------------------------------------------------------------------ identity/run
def generator_identity(generator: Generator) -> str:
    """A short hash of the model: the checkpoint's identity, or config + weights in memory."""
    source = generator.source_dir
    if source is not None and (Path(source) / "genkit.json").is_file():
        return checkpoint_identity(source)
    digest = hashlib.sha256(json.dumps(config_to_dict(generator.config), sort_keys=True).encode())
    with generator.sampling_weights():
        for name, module in sorted(generator.modules().items()):
            for key, tensor in sorted(module.state_dict().items()):
                digest.update(f"{name}.{key}".encode())
                digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def parse_shard(shard: str | tuple[int, int] | None) -> tuple[int, int]:
    """``"i/K"`` → (i, K); under ``accelerate launch``/``torchrun`` the process rank."""
    if shard is None:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        return (int(os.environ.get("RANK", "0")), world) if world > 1 else (0, 1)
    if isinstance(shard, tuple):
        i, k = shard
    else:
        try:
            i, k = (int(x) for x in str(shard).split("/"))
        except ValueError:
            raise SamplingError(f"--shard expects i/K such as 0/4, got {shard!r}") from None
    if not (k >= 1 and 0 <= i < k):
        raise SamplingError(f"--shard {i}/{k}: need 0 <= i < K")
    return i, k


def _part_name(shard: tuple[int, int], base: str = MANIFEST) -> str:
    """The file a shard appends to: ``manifest.jsonl`` alone, else one part per shard."""
    i, k = shard
    stem = base.removesuffix(".jsonl")
    return base if k == 1 else f"{stem}.part-{i:03d}-of-{k:03d}.jsonl"


def read_manifest_records(out: Path, base: str = MANIFEST) -> dict[int, dict[str, Any]]:
    """Finished samples of an output directory (all manifest parts), by index. A partial
    last line (a crash mid-write) is ignored."""
    records: dict[int, dict[str, Any]] = {}
    stem = base.removesuffix(".jsonl")
    for file in sorted([*out.glob(base), *out.glob(f"{stem}.part-*.jsonl")]):
        for line in file.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(json.JSONDecodeError, KeyError, TypeError):
                rec = json.loads(line)
                records[int(rec["index"])] = rec
    return records


def merge_manifests(out: Path) -> int:
    """Merge every shard's part into ``manifest.jsonl`` (and ``samples.jsonl`` for text),
    sorted by index; return the number of finished samples."""
    records = read_manifest_records(out)
    for base in (TEXT_FILE, MANIFEST):  # the manifest last: it is what marks samples done
        stem = base.removesuffix(".jsonl")
        parts = list(out.glob(f"{stem}.part-*.jsonl"))
        if not parts and base == TEXT_FILE:
            continue
        rows = read_manifest_records(out, base)
        rows = {i: r for i, r in rows.items() if i in records}
        atomic_write_text(out / base, "".join(json.dumps(rows[i]) + "\n" for i in sorted(rows)))
        for part in parts:
            part.unlink()
    return len(records)


def _run_description(generator: Generator, plan: SamplePlan, seed: int, fmt: str) -> dict[str, Any]:
    return {
        "generator": generator.name,
        "checkpoint": generator_identity(generator),
        "seed": seed,
        "format": fmt,
        "options": config_to_dict(plan.options),
        "conditions": plan.conditions,
        "per_condition": plan.per_condition,
    }


def _check_or_write_run(out: Path, run: dict[str, Any], overwrite: bool) -> None:
    file = out / RUN_FILE
    if file.is_file() and not overwrite:
        try:
            previous = json.loads(file.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            previous = {}
        differ = [k for k in run if previous.get(k) != run[k]]
        if differ:
            raise SamplingError(f"{out} holds samples of a different run ({', '.join(differ)} "
                                "differ); choose another --out, or pass --overwrite to replace them")
        return
    if overwrite and out.exists():
        for child in out.iterdir():
            if child.name.startswith(("manifest", "samples")) or child.name == RUN_FILE or \
                    child.suffix in (".png", ".npy", ".txt"):
                child.unlink() if child.is_file() else shutil.rmtree(child)
    atomic_write_text(file, json.dumps(run, indent=2) + "\n")


def _repair_text_file(file: Path, done: set[int]) -> None:
    """Keep only the lines of a text-samples file whose sample is in the manifest."""
    if not file.exists():
        return
    kept, seen = [], set()
    for line in file.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(json.JSONDecodeError, KeyError, TypeError):
            rec = json.loads(line)
            if rec["index"] in done and rec["index"] not in seen:
                kept.append(line + "\n")
                seen.add(rec["index"])
    atomic_write_text(file, "".join(kept))


def _shard_indices(n: int, batch_size: int, shard: tuple[int, int], done: set[int]) -> list[int]:
    """This shard's indices: whole aligned batches, batch b to shard b % K."""
    i, k = shard
    return [j for j in range(n) if (j // batch_size) % k == i and j not in done]


def sample_to(generator: Generator, out: str | Path, n: int | None = None, seed: int = 0,
              batch_size: int | None = None, format: str | None = None,
              grid: str | Path | None = None, overwrite: bool = False,
              shard: str | tuple[int, int] | None = None, progress: bool = True,
              **kwargs: Any) -> SampleReport:
    """Write ``n`` samples into ``out`` with a manifest; rerunning resumes.

    Args:
        generator: a loaded or trained generator.
        out: the output directory.
        n: number of samples (or set by ``per_condition`` x conditions).
        seed: base seed; sample i uses ``sample_seed(seed, i)``.
        batch_size: samples per generation batch.
        format: png | npy (images), jsonl | txt (text).
        grid: a contact-sheet PNG of the first images.
        overwrite: replace a directory made by another checkpoint, seed or options.
        shard: ``"i/K"``: do only this share (under ``accelerate launch``: the process rank).
        **kwargs: conditions (label, labels, labels_file, prompt, prompts, prompts_file,
            per_condition) and the generator's sampling options.
    """
    from tqdm.auto import tqdm

    out = Path(out)
    fmt = format or ("png" if generator.modality == "image" else "jsonl")
    allowed = IMAGE_FORMATS if generator.modality == "image" else TEXT_FORMATS
    if fmt not in allowed:
        raise SamplingError(f"--format {fmt} does not fit {generator.modality} samples; "
                            f"use one of {', '.join(allowed)}")
    batch_size = _default_batch_size(generator) if batch_size is None else int(batch_size)
    if batch_size < 1:
        raise SamplingError(f"--batch-size must be at least 1, got {batch_size}")
    plan = plan_samples(generator, n, dict(kwargs))
    shard_ = parse_shard(shard)
    _prepare_out(out, clean=shard_[1] == 1)
    try:
        _check_or_write_run(out, _run_description(generator, plan, seed, fmt), overwrite)
        done = {i for i in read_manifest_records(out) if i < plan.n}
        text_file = out / _part_name(shard_, TEXT_FILE)
        if fmt == "jsonl":
            _repair_text_file(text_file, done)
        todo = _shard_indices(plan.n, batch_size, shard_, done)
        skipped = len(_shard_indices(plan.n, batch_size, shard_, set())) - len(todo)
        identity = generator_identity(generator)
        start = time.perf_counter()
        bar = tqdm(total=len(todo), desc=f"sample {generator.name}", unit="sample",
                   disable=not progress or not todo, dynamic_ncols=True)
        manifest_path = out / _part_name(shard_)
        with open(manifest_path, "a", encoding="utf-8") as manifest:
            for samples in generate_batches(generator, plan, seed, batch_size, todo):
                records = [_write_sample(out, s, fmt, identity, text_file) for s in samples]
                manifest.write("".join(json.dumps(r) + "\n" for r in records))
                manifest.flush()
                bar.update(len(samples))
        bar.close()
        seconds = time.perf_counter() - start
        if shard_[1] == 1:
            merge_manifests(out)
        elif shard is None:  # launched processes (accelerate launch / torchrun): merge once
            _finish_launched_shard(out, shard_)
        if grid is not None and generator.modality == "image" and shard_[0] == 0:
            _write_grid_from_files(out, grid, fmt)
    except OSError as exc:
        raise SamplingError(f"cannot write samples to {out}: {exc.strerror or exc}; free space "
                            "or fix permissions, then rerun the same command to continue") from None
    written = len(todo)
    return SampleReport(str(out), written, skipped, seconds,
                        written / seconds if seconds > 0 else 0.0,
                        [r for r in (str(out / _part_name(shard_)),)])


def _finish_launched_shard(out: Path, shard: tuple[int, int], timeout: float = 24 * 3600) -> None:
    """Mark this process's share done; process 0 waits for every share, then merges."""
    i, k = shard
    atomic_write_text(out / f".done-{i:03d}-of-{k:03d}", "")
    if i != 0:
        return
    markers = [out / f".done-{j:03d}-of-{k:03d}" for j in range(k)]
    deadline = time.monotonic() + timeout
    while not all(m.exists() for m in markers):
        if time.monotonic() > deadline:
            raise SamplingError("timed out waiting for the other sampling processes; rerun the "
                                "same command to finish the missing samples")
        time.sleep(0.2)
    merge_manifests(out)
    for marker in markers:
        marker.unlink(missing_ok=True)


def _prepare_out(out: Path, clean: bool) -> None:
    """Create ``out``; with ``clean`` (no other shard can be writing), drop the temp files
    of a killed run."""
    if out.exists() and not out.is_dir():
        raise SamplingError(f"--out {out} is a file; give a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SamplingError(f"cannot create --out {out}: {exc.strerror or exc}") from None
    if not os.access(out, os.W_OK):
        raise SamplingError(f"--out {out} is not writable; choose another directory")
    if clean:
        for stale in out.glob(".*.tmp-*"):
            stale.unlink(missing_ok=True)


def _write_sample(out: Path, sample: Sample, fmt: str, identity: str,
                  text_file: Path) -> dict[str, Any]:
    record: dict[str, Any] = {"index": sample.index, "seed": sample.seed,
                              **sample.conditions, "checkpoint": identity}
    drawn = getattr(sample.output, "info", {}).get("label")
    if "label" not in record and drawn is not None:  # a label the model drew for itself
        record["label"] = int(drawn)
    if fmt == "jsonl":
        line = json.dumps({"index": sample.index, "text": sample.output, **sample.conditions})
        with open(text_file, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
        record["file"] = TEXT_FILE
        return record
    name = f"{sample.index:06d}.{fmt}"
    atomic_write_bytes(out / name, encode_sample(sample.output, fmt))
    record["file"] = name
    return record


def _write_grid_from_files(out: Path, grid: str | Path, fmt: str, limit: int = 64) -> None:
    import numpy as np
    from PIL import Image

    records = read_manifest_records(out)
    images = []
    for i in sorted(records)[:limit]:
        path = out / records[i]["file"]
        if fmt == "png":
            with Image.open(path) as im:
                images.append(im.copy())
        else:
            images.append(Image.fromarray(np.load(path, allow_pickle=False)))
    if images:
        save_grid(images, grid)


# ------------------------------------------------------------------------ multi-process
def run_sharded(argv: list[str], processes: int, out: Path, env: dict[str, str] | None = None) -> None:
    """Run ``genkit sample`` as ``processes`` shards (one process each), then merge."""
    import torch

    procs = []
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    for rank in range(processes):
        child_env = {**os.environ, **(env or {})}
        child_env.pop("WORLD_SIZE", None)
        if gpus > 1:
            child_env["CUDA_VISIBLE_DEVICES"] = str(rank % gpus)
        cmd = [sys.executable, "-m", "genkit", "sample", *argv, "--shard", f"{rank}/{processes}"]
        procs.append(subprocess.Popen(cmd, env=child_env))
    codes = [p.wait() for p in procs]
    if any(codes):
        raise SamplingError(f"{sum(1 for c in codes if c)} of {processes} sampling processes "
                            "failed (see above); rerun the same command to finish the missing samples")
    merge_manifests(out)
