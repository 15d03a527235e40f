"""Writing samples to a folder: atomic files, a manifest, resume, shards.

An output directory holds one file per sample (``000042.png``), ``manifest.jsonl`` (one
JSON line per finished sample: index, seed, file, conditions, checkpoint identity) and
``run.json`` (what the run was asked for). Files are written under a temporary name and
renamed; a sample enters the manifest only after its file is complete, so rerunning the
same command after a crash or Ctrl-C produces exactly the missing samples.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from genkit.config import config_to_dict
from genkit.contract import GeneratorContract
from genkit.errors import ConfigError, SamplingError
from genkit.fs import (
    LOCK_FILE,
    atomic_write_bytes,
    atomic_write_text,
    folder_lock,
    remove_leftovers,
)
from genkit.imaging import save_grid
from genkit.sample.plan import (
    Sample,
    SamplePlan,
    generate_batches,
    plan_samples,
    resolve_batch_size,
)
from genkit.store.checkpoint import generator_identity

IMAGE_FORMATS = ("png", "npy")
TEXT_FORMATS = ("jsonl", "txt")
RUN_FILE = "run.json"
MANIFEST = "manifest.jsonl"
TEXT_FILE = "samples.jsonl"
GRID_FILE = "grid.png"


@dataclasses.dataclass
class SampleReport:
    """What :func:`sample_to` did."""

    out: str
    written: int
    skipped: int
    seconds: float
    samples_per_second: float
    files: list[str]
    what: str = "samples"  # "edits" for genkit edit

    def summary(self) -> str:
        return (f"wrote {self.written} {self.what}, skipped {self.skipped} already done, in "
                f"{self.seconds:.1f} s ({self.samples_per_second:.1f} {self.what}/s) -> {self.out}")


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


def _run_description(generator: GeneratorContract, plan: SamplePlan, seed: int, fmt: str) -> dict[str, Any]:
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
    """Resume the same run, refuse another one, or (``overwrite``) delete exactly what the
    other run's records say it wrote and start this one."""
    file = out / RUN_FILE
    if file.is_file():
        try:
            previous = json.loads(file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            previous = {}
        differ = [k for k in run if not isinstance(previous, dict) or previous.get(k) != run[k]]
        if not differ:
            return
        if not overwrite:
            raise SamplingError(f"{out} holds samples of a different run ({', '.join(differ)} "
                                "differ); choose another --out, or pass --overwrite to replace them")
        _delete_recorded(out)
    atomic_write_text(file, json.dumps(run, indent=2) + "\n")


def check_owned(out: Path) -> None:
    """Refuse an output folder that holds anything genkit did not write: a folder without
    ``run.json`` must be empty (but for genkit's own lock and leftovers)."""
    if (out / RUN_FILE).is_file():
        return
    foreign = sorted(p.name for p in out.iterdir() if not _is_genkit_hidden(p.name))
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise SamplingError(f"--out {out} holds files genkit did not write ({shown}); genkit "
                            "never deletes or replaces them: choose an empty or new folder")


def _check_grid_path(out: Path, grid: str | Path | None) -> None:
    """A contact sheet outside ``out`` must not replace a file that was there before this
    run began (a rerun of the same run may rewrite its own)."""
    if grid is None or (out / RUN_FILE).is_file():
        return
    path = Path(grid)
    if path.exists() and path.resolve().parent != out.resolve():
        raise SamplingError(f"--grid {path} already exists; genkit never replaces a file it did "
                            "not write: choose another path")


def _is_genkit_hidden(name: str) -> bool:
    return name == LOCK_FILE or name.startswith((".genkit-shard-", ".done-")) or ".tmp-" in name


def _delete_recorded(out: Path) -> None:
    """Delete the files the manifest says this folder's run wrote, and its records. Files
    the records do not name stay, whoever wrote them."""
    records = read_manifest_records(out)
    files = {rec.get("file") for rec in records.values() if isinstance(rec.get("file"), str)}
    for name in sorted(files):
        path = out / name
        if Path(name).name == name and path.is_file() and not path.is_symlink():
            path.unlink()
    for base in (MANIFEST, TEXT_FILE):
        stem = base.removesuffix(".jsonl")
        for part in [out / base, *out.glob(f"{stem}.part-*.jsonl")]:
            part.unlink(missing_ok=True)
    (out / GRID_FILE).unlink(missing_ok=True)


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


def _shard_indices(n: int, batch_size: int, shard: tuple[int, int],
                   done: set[int]) -> Iterator[int]:
    """This shard's indices not yet done, lazily: whole aligned batches, batch b to
    shard b % K."""
    i, k = shard
    for b in range(i, -(-n // batch_size), k):
        for j in range(b * batch_size, min(n, (b + 1) * batch_size)):
            if j not in done:
                yield j


def _shard_size(n: int, batch_size: int, shard: tuple[int, int]) -> int:
    """How many indices shard ``i/K`` holds (without listing them)."""
    i, k = shard
    batches = -(-n // batch_size)
    full = len(range(i, batches, k)) * batch_size
    last = batches - 1
    if last % k == i and n % batch_size:  # the last batch is short
        full -= batch_size - n % batch_size
    return full


def sample_to(generator: GeneratorContract, out: str | Path, n: int | None = None, seed: int = 0,
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
    batch_size = resolve_batch_size(generator, batch_size)
    plan = plan_samples(generator, n, dict(kwargs))
    shard_ = parse_shard(shard)
    run = _run_description(generator, plan, seed, fmt)
    with open_out(out, run, overwrite, grid, shard_) as finished:
        done = {i for i in finished if i < plan.n}
        text_file = out / _part_name(shard_, TEXT_FILE)
        if fmt == "jsonl":
            _repair_text_file(text_file, done)
        total = _shard_size(plan.n, batch_size, shard_)
        skipped = sum(1 for j in done if (j // batch_size) % shard_[1] == shard_[0])
        todo = _shard_indices(plan.n, batch_size, shard_, done)
        identity = generator_identity(generator)
        start = time.perf_counter()
        bar = tqdm(total=total - skipped, desc=f"sample {generator.name}", unit="sample",
                   disable=not progress or total == skipped, dynamic_ncols=True)
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
    written = total - skipped
    return SampleReport(str(out), written, skipped, seconds,
                        written / seconds if seconds > 0 else 0.0,
                        [r for r in (str(out / _part_name(shard_)),)])


@contextlib.contextmanager
def open_out(out: Path, run: dict[str, Any], overwrite: bool, grid: str | Path | None = None,
             shard: tuple[int, int] = (0, 1)) -> Iterator[set[int]]:
    """Claim output folder ``out`` for ``run`` and yield the indices already finished.

    The one door into an output folder, for samples and edits alike: the folder is made,
    refused if it holds files genkit did not write (checked before the lock file is
    made, so a user's folder is left as it was), locked, cleared of a killed run's temp
    files, and its ``run.json`` resumed, refused or (``overwrite``) replaced. OS errors
    inside the block become one-line :class:`SamplingError` s.
    """
    _prepare_out(out)
    check_owned(out)
    with _lock(out, shard), _os_errors(out):
        if shard[1] == 1:
            remove_leftovers(out)  # no other process writes here: a killed run's temp files
        check_owned(out)
        _check_grid_path(out, grid)
        _check_or_write_run(out, run, overwrite)
        yield set(read_manifest_records(out))


def write_output(out: Path, index: int, output: Any, fmt: str) -> str:
    """Write one image (or text) file ``NNNNNN.fmt`` atomically; return its name."""
    name = f"{index:06d}.{fmt}"
    atomic_write_bytes(out / name, encode_sample(output, fmt))
    return name


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


def _lock(out: Path, shard: tuple[int, int]) -> contextlib.ExitStack:
    """The output folder's lock: exclusive for a whole run; for shard i/K shared with the
    other shards, plus an exclusive lock of its own."""
    stack = contextlib.ExitStack()
    i, k = shard
    stack.enter_context(folder_lock(out, "--out", shared=k > 1))
    if k > 1:
        stack.enter_context(folder_lock(out, "--out (or --shard)",
                                        name=f".genkit-shard-{i}-of-{k}.lock"))
    return stack


@contextlib.contextmanager
def _os_errors(out: Path) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise SamplingError(f"cannot write samples to {out}: {exc.strerror or exc}; free space "
                            "or fix permissions, then rerun the same command to continue") from None


def _prepare_out(out: Path) -> None:
    """Create ``out`` (a writable directory)."""
    if out.exists() and not out.is_dir():
        raise SamplingError(f"--out {out} is a file; give a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SamplingError(f"cannot create --out {out}: {exc.strerror or exc}") from None
    if not os.access(out, os.W_OK):
        raise SamplingError(f"--out {out} is not writable; choose another directory")


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
    record["file"] = write_output(out, sample.index, sample.output, fmt)
    return record


def _write_grid_from_files(out: Path, grid: str | Path, fmt: str, limit: int = 64) -> None:
    records = read_manifest_records(out)
    images = [read_output(out / records[i]["file"]) for i in sorted(records)[:limit]]
    if images:
        save_grid(images, grid)


def read_output(path: Path) -> Any:
    """A written image file (``.png`` or ``.npy``) back as a PIL image."""
    import numpy as np
    from PIL import Image

    if path.suffix == ".npy":
        return Image.fromarray(np.load(path, allow_pickle=False))
    with Image.open(path) as im:
        return im.copy()
