"""Editing images with a generator: inpainting, image-to-image, reconstruction.

The core half of editing. :func:`plan_edits` checks everything a user can get wrong
before any model runs (the task, the strength, the masks, the conditions and options);
:func:`edit_batches` hands the family's ``edit_batch`` hook one aligned batch at a time, edit i
seeded by ``sample_seed(seed, i)`` exactly as sample i is, so an edit depends only on
(checkpoint, seed, i, input i), never on the batch or a resume. :func:`edit_to` writes
them through the same folder door as ``sample_to`` (:func:`genkit.sample.writer.open_out`):
atomic files, a locked folder, ``run.json`` and a manifest naming each input and its mask,
so rerunning the same command after a crash writes exactly the missing edits.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from genkit.config import config_to_dict
from genkit.contract import EDIT_TASKS, GeneratorContract
from genkit.errors import SamplingError
from genkit.imaging import save_grid, tensor_to_images
from genkit.sample.edit_inputs import (
    EditInput,
    check_inputs,
    collect_inputs,
    load_images,
    load_masks,
)
from genkit.sample.plan import (
    CONDITION_KEYS,
    Sample,
    SamplePlan,
    aligned_batches,
    plan_samples,
    resolve_batch_size,
)
from genkit.sample.writer import (
    GRID_FILE,
    IMAGE_FORMATS,
    MANIFEST,
    SampleReport,
    merge_manifests,
    open_out,
    read_manifest_records,
    read_output,
    write_output,
)
from genkit.seeding import sample_seed
from genkit.store.checkpoint import generator_identity

SHEET_ROWS = 16  # edits shown in the before/after contact sheet
Note = Callable[[str], None]


@dataclasses.dataclass
class EditPlan:
    """A checked edit run: what to do to which inputs, with which conditions and options."""

    task: str
    strength: float | None
    inputs: list[EditInput]
    conditions: SamplePlan  # its ``condition(i)`` is edit i's label/prompt
    options: Any  # the family's validated edit options
    channels: int
    size: int

    @property
    def n(self) -> int:
        return len(self.inputs)


def warn_note(message: str) -> None:
    """The Python API's way to say that inputs were converted: a ``UserWarning``."""
    warnings.warn(message, UserWarning, stacklevel=6)  # the caller of Generator.edit


def check_strength(strength: Any) -> float | None:
    if strength is None:
        return None
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) \
            or not math.isfinite(strength) or not 0.0 <= strength <= 1.0:
        raise SamplingError(f"--strength must be a number between 0 and 1, got {strength!r}")
    return float(strength)


def plan_edits(generator: GeneratorContract, images: Any, task: str, masks: Any = None,
               strength: Any = None, kwargs: dict[str, Any] | None = None,
               note: Note | None = warn_note) -> EditPlan:
    """Check an edit request, cheapest checks first; ``kwargs`` holds the conditions
    (``label``, ``labels``, ``prompt``, ...) and the family's edit options."""
    kwargs = dict(kwargs or {})
    if task not in EDIT_TASKS:
        raise SamplingError(f"unknown --task {task!r}; use one of {', '.join(EDIT_TASKS)}")
    if generator.modality != "image" or task not in generator.accepted_edit_tasks():
        raise SamplingError(generator.cannot_edit(task))
    strength = check_strength(strength)
    if task == "inpaint" and masks is None:
        raise SamplingError("--task inpaint needs --masks (white = fill, black = keep)")
    if task != "inpaint" and masks is not None:
        raise SamplingError(f"--masks are for --task inpaint, not {task}; drop them")
    if kwargs.get("per_condition") is not None:
        raise SamplingError("--per-condition is for sampling; an edit makes one image per input")
    conditions = {k: kwargs.pop(k) for k in CONDITION_KEYS if k in kwargs}
    options = generator.edit_options(kwargs)
    generator.check_edit(task, strength, options)
    inputs = collect_inputs(images, masks)
    channels, size = generator.edit_image_format()
    check_inputs(inputs, channels, size, note)
    table = plan_samples(generator, len(inputs), conditions)
    return EditPlan(task, strength, inputs, table, options, channels, size)


def edit_batches(generator: GeneratorContract, plan: EditPlan, seed: int, batch_size: int,
                 indices: Iterable[int]) -> Iterator[list[Sample]]:
    """Yield the edits of ``indices``, one list per aligned batch (inputs are read a batch
    at a time, so a folder of any size fits in memory)."""
    with generator.inference():
        for batch in aligned_batches(indices, batch_size):
            items = [plan.inputs[i] for i in batch]
            images = load_images(items, plan.channels, plan.size).to(generator.device)
            masks = load_masks(items, plan.size).to(generator.device) \
                if plan.task == "inpaint" else None
            seeds = [sample_seed(seed, i) for i in batch]
            conditions = [plan.conditions.condition(i) for i in batch]
            outputs = generator.edit_batch(images, masks, seeds, conditions, plan.options, plan.task,
                                     plan.strength)
            if len(outputs) != len(batch):
                raise SamplingError(f"generator {generator.name!r} returned {len(outputs)} "
                                    f"edits for a batch of {len(batch)}")
            yield [Sample(i, s, c, o) for i, s, c, o in zip(batch, seeds, conditions, outputs)]


def edit_images(generator: GeneratorContract, images: Any, task: str, masks: Any = None,
                strength: Any = None, seed: int = 0, batch_size: int | None = None,
                note: Note | None = warn_note, **kwargs: Any) -> list[Any]:
    """The edited images, in input order (see :meth:`genkit.api.Generator.edit`)."""
    plan = plan_edits(generator, images, task, masks, strength, kwargs, note)
    size = resolve_batch_size(generator, batch_size)
    return [s.output for samples in edit_batches(generator, plan, seed, size, range(plan.n))
            for s in samples]


def _run_description(generator: GeneratorContract, plan: EditPlan, seed: int,
                     fmt: str) -> dict[str, Any]:
    inputs = hashlib.sha256()
    for item in plan.inputs:
        inputs.update(f"{item.name}\0{item.mask_name}\0{item.digest()}\n".encode())
    return {"generator": generator.name, "checkpoint": generator_identity(generator),
            "seed": seed, "format": fmt, "task": plan.task, "strength": plan.strength,
            "options": config_to_dict(plan.options), "conditions": plan.conditions.conditions,
            "n": plan.n, "inputs": inputs.hexdigest()}


def edit_to(generator: GeneratorContract, out: str | Path, images: Any, task: str,
            masks: Any = None, strength: Any = None, seed: int = 0,
            batch_size: int | None = None, format: str | None = None,
            grid: str | Path | bool | None = None, overwrite: bool = False,
            progress: bool = True, note: Note | None = warn_note,
            **kwargs: Any) -> SampleReport:
    """Write one edited image per input into ``out``, with a manifest; rerunning resumes.

    ``grid``: the before/after contact sheet (None: ``out/grid.png``; False: none). The
    rest as :func:`edit_images`; ``format`` is png or npy, ``overwrite`` as for
    ``sample_to``.
    """
    from tqdm.auto import tqdm

    out = Path(out)
    fmt = format or "png"
    if fmt not in IMAGE_FORMATS:
        raise SamplingError(f"--format {fmt} does not fit images; use one of "
                            f"{', '.join(IMAGE_FORMATS)}")
    batch_size = resolve_batch_size(generator, batch_size)
    plan = plan_edits(generator, images, task, masks, strength, kwargs, note)
    sheet = None if grid is False else Path(grid) if grid not in (None, True) else out / GRID_FILE
    run = _run_description(generator, plan, seed, fmt)
    with open_out(out, run, overwrite, sheet) as finished:
        done = {i for i in finished if i < plan.n}
        identity = generator_identity(generator)
        start = time.perf_counter()
        bar = tqdm(total=plan.n - len(done), desc=f"edit {generator.name}", unit="image",
                   disable=not progress or len(done) == plan.n, dynamic_ncols=True)
        with open(out / MANIFEST, "a", encoding="utf-8") as manifest:
            todo = (i for i in range(plan.n) if i not in done)
            for samples in edit_batches(generator, plan, seed, batch_size, todo):
                records = [_write_edit(out, s, plan.inputs[s.index], fmt, identity)
                           for s in samples]
                manifest.write("".join(json.dumps(r) + "\n" for r in records))
                manifest.flush()
                bar.update(len(samples))
        bar.close()
        seconds = time.perf_counter() - start
        merge_manifests(out)
        if sheet is not None:
            write_sheet(out, plan, sheet)
    written = plan.n - len(done)
    return SampleReport(str(out), written, len(done), seconds,
                        written / seconds if seconds > 0 else 0.0, [str(out / MANIFEST)],
                        what="edits")


def _write_edit(out: Path, sample: Sample, item: EditInput, fmt: str,
                identity: str) -> dict[str, Any]:
    record: dict[str, Any] = {"index": sample.index, "seed": sample.seed, "input": item.name,
                              "mask": item.mask_name, **sample.conditions,
                              "checkpoint": identity}
    chosen = getattr(sample.output, "info", {}).get("label")
    if "label" not in record and chosen is not None:  # a label the model inferred or drew
        record["label"] = int(chosen)
    record["file"] = write_output(out, sample.index, sample.output, fmt)
    return record


def write_sheet(out: Path, plan: EditPlan, path: Path) -> None:
    """The before/after contact sheet of the first edits: one row each, the input as the
    model saw it, for inpainting the input with its fill region grey, then the edit."""
    records = read_manifest_records(out)
    shown = sorted(records)[:SHEET_ROWS]
    if not shown:
        return
    items = [plan.inputs[i] for i in shown]
    before = load_images(items, plan.channels, plan.size)  # (k, C, S, S)
    columns = [tensor_to_images(before)]
    if plan.task == "inpaint":
        fill = load_masks(items, plan.size)  # (k, 1, S, S)
        columns.append(tensor_to_images(before * (1 - fill)))  # the hole at mid-grey
    columns.append([read_output(out / records[i]["file"]) for i in shown])
    cells = [column[row] for row in range(len(shown)) for column in columns]
    save_grid(cells, path, columns=len(columns))
