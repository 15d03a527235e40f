"""The seeded data order: global batch b of a run is a function of (seed, b) alone.

:func:`make_loader` is the one place the engine gets its batches from. It builds a
DataLoader over the seeded batch order (or reads a stream in its seeded order), adds
augmentation when ``args.augment`` is set, chooses the worker processes, prints the
one-line warnings for files the workers skipped, and turns an error raised in a worker
into the same one-line error it would be in the main process.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader

from genkit.data.datasets import SKIPPED_KEY, make_train_dataset
from genkit.data.decode import warn_skipped
from genkit.errors import GenkitError
from genkit.seeding import derive_seed
from genkit.train.args import TrainArgs


class SeededBatchSampler:
    """Endless batches of dataset indices for one process.

    Epoch e visits ``randperm(n)`` seeded by (seed, e); global batch b of an epoch is
    ``perm[b*B:(b+1)*B]`` and process r takes its r-th slice. Starting at global batch
    ``start`` (a resume point) skips straight there. With ``with_batch_number`` each
    index comes as ``(index, global batch number)``, the coordinates per-sample
    randomness (augmentation) is derived from.
    """

    def __init__(self, n: int, batch_size: int, seed: int, rank: int, world: int,
                 start: int = 0, with_batch_number: bool = False) -> None:
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.rank, self.world, self.start = rank, world, start
        self.batches_per_epoch = n // batch_size
        self.with_batch_number = with_batch_number

    def __iter__(self) -> Iterator[list[Any]]:
        per_process = self.batch_size // self.world
        epoch, offset = divmod(self.start, self.batches_per_epoch)
        while True:
            gen = torch.Generator().manual_seed(derive_seed("epoch", self.seed, epoch))
            perm = torch.randperm(self.n, generator=gen)
            for b in range(offset, self.batches_per_epoch):
                batch = perm[b * self.batch_size:(b + 1) * self.batch_size]
                mine = batch[self.rank * per_process:(self.rank + 1) * per_process].tolist()
                if self.with_batch_number:
                    number = epoch * self.batches_per_epoch + b
                    mine = [(i, number) for i in mine]
                yield mine
            epoch, offset = epoch + 1, 0


def _collate_batched(items: Any) -> Any:
    return items


def loader_workers(dataset: Any, args: TrainArgs) -> int:
    """``--num-workers`` when given (``args.num_workers`` not None), else the dataset's
    own choice: 0 for in-memory tensors (a gather costs nothing) and streams (one ordered
    reader), min(4, cores - 1) for lazily decoded images."""
    asked = getattr(args, "num_workers", None)
    if asked is not None:
        return int(asked)
    return int(getattr(dataset, "default_workers", 0))


class Batches:
    """What the engine iterates: the DataLoader's batches (or a stream's), with skipped
    files reported once and worker errors raised as their one-line selves."""

    def __init__(self, source: Any, workers: int) -> None:
        self.source, self.workers = source, workers

    def __iter__(self) -> Iterator[Any]:
        iterator = iter(self.source)
        while True:
            try:
                batch = next(iterator)
            except StopIteration:
                return
            except GenkitError as exc:
                raise type(exc)(_original_message(str(exc))) from None
            if isinstance(batch, dict) and SKIPPED_KEY in batch:
                batch = dict(batch)
                for path, reason in batch.pop(SKIPPED_KEY):
                    warn_skipped(path, reason)
            yield batch


def _original_message(message: str) -> str:
    """A worker's error as raised there: torch re-raises it as ``Caught X in DataLoader
    worker ... Original Traceback ... module.X: message``; keep the last line's message."""
    if "Original Traceback" not in message:
        return message
    last = [line for line in message.splitlines() if line.strip()][-1]
    head, sep, tail = last.partition(": ")
    return tail if sep and "." in head and " " not in head else last


class _Stream:
    def __init__(self, dataset: Any, args: TrainArgs, rank: int, world: int, start: int) -> None:
        self.dataset, self.args, self.rank, self.world, self.start = dataset, args, rank, world, start

    def __iter__(self) -> Iterator[Any]:
        return self.dataset.batches(self.args.batch_size, self.args.seed, self.rank, self.world,
                                    self.start)


def make_loader(dataset: Any, args: TrainArgs, rank: int, world: int, start_batch: int,
                pin: bool) -> Any:
    """Batches of ``dataset`` in the seeded order from global batch ``start_batch``,
    augmented when ``args.augment`` is set (see :func:`genkit.data.datasets.make_train_dataset`)."""
    dataset = make_train_dataset(dataset, bool(getattr(args, "augment", False)), args.seed)
    if getattr(dataset, "streaming", False):
        return Batches(_Stream(dataset, args, rank, world, start_batch), 0)
    sampler = SeededBatchSampler(len(dataset), args.batch_size, args.seed, rank, world,
                                 start_batch, getattr(dataset, "takes_batch_number", False))
    batched = getattr(dataset, "batched", False)  # one __getitems__ call per batch
    kwargs: dict[str, Any] = {}
    if batched:
        kwargs["collate_fn"] = _collate_batched
    workers = loader_workers(dataset, args)
    if workers:
        kwargs.update(num_workers=workers, persistent_workers=True)
    return Batches(DataLoader(dataset, batch_sampler=sampler, pin_memory=pin, **kwargs), workers)
