"""The seeded data order: global batch b of a run is a function of (seed, b) alone."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader

from genkit.seeding import derive_seed
from genkit.train.args import TrainArgs


class SeededBatchSampler:
    """Endless batches of dataset indices for one process.

    Epoch e visits ``randperm(n)`` seeded by (seed, e); global batch b of an epoch is
    ``perm[b*B:(b+1)*B]`` and process r takes its r-th slice. Starting at global batch
    ``start`` (a resume point) skips straight there.
    """

    def __init__(self, n: int, batch_size: int, seed: int, rank: int, world: int,
                 start: int = 0) -> None:
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.rank, self.world, self.start = rank, world, start
        self.batches_per_epoch = n // batch_size

    def __iter__(self) -> Iterator[list[int]]:
        per_process = self.batch_size // self.world
        epoch, offset = divmod(self.start, self.batches_per_epoch)
        while True:
            gen = torch.Generator().manual_seed(derive_seed("epoch", self.seed, epoch))
            perm = torch.randperm(self.n, generator=gen)
            for b in range(offset, self.batches_per_epoch):
                batch = perm[b * self.batch_size:(b + 1) * self.batch_size]
                yield batch[self.rank * per_process:(self.rank + 1) * per_process].tolist()
            epoch, offset = epoch + 1, 0


def _collate_batched(items: Any) -> Any:
    return items


def make_loader(dataset: Any, args: TrainArgs, rank: int, world: int, start_batch: int,
                pin: bool) -> Any:
    """A DataLoader over ``dataset`` in the seeded order, starting at ``start_batch``."""
    sampler = SeededBatchSampler(len(dataset), args.batch_size, args.seed, rank, world, start_batch)
    batched = getattr(dataset, "batched", False)  # TensorDictDataset: one gather per batch
    kwargs: dict[str, Any] = {}
    if batched:
        kwargs["collate_fn"] = _collate_batched
    if args.num_workers:
        kwargs.update(num_workers=args.num_workers, persistent_workers=True)
    return DataLoader(dataset, batch_sampler=sampler, pin_memory=pin, **kwargs)
