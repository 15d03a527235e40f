"""Seeds derived from a base seed and a position: the root of genkit's determinism.

Every random stream genkit hands out (sample i of a batch run, the training step s on
process r) is seeded by hashing its coordinates, so it depends on nothing else: not the
batch it is drawn in, not the resume point, not the number of processes.
"""

from __future__ import annotations

import hashlib
import numbers
from typing import TYPE_CHECKING, Any

from genkit.errors import SamplingError

if TYPE_CHECKING:
    import torch


def derive_seed(*parts: object) -> int:
    """A 63-bit seed that is a pure function of ``parts`` (stable across runs and machines)."""
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def sample_seed(seed: int, index: int) -> int:
    """The seed of sample ``index`` of a run with base ``seed``."""
    return derive_seed("sample", seed, index)


def sample_generators(seeds: list[int], device: Any) -> list[torch.Generator]:
    """One ``torch.Generator`` per sample seed, on ``device``: the per-sample randomness
    that makes sample i independent of the batch it is drawn in."""
    import torch

    return [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]


def check_label(label: Any, num_classes: int) -> int:
    """``label`` as an int in ``0..num_classes-1``, or the one error every family gives."""
    if isinstance(label, bool) or not isinstance(label, numbers.Integral) \
            or not 0 <= label < num_classes:
        raise SamplingError(f"label {label!r} is out of range: this model has {num_classes} "
                            f"classes, labels 0..{num_classes - 1}")
    return int(label)


def sample_labels(conditions: list[dict[str, Any]], generators: list[torch.Generator],
                  num_classes: int, device: Any) -> torch.Tensor:
    """The label of each sample: the asked one, else drawn from that sample's own generator
    (so an unlabelled sample of a conditional model still depends on its seed alone)."""
    import torch

    labels = []
    for cond, gen in zip(conditions, generators):
        label = cond.get("label")
        if label is None:
            label = int(torch.randint(num_classes, (1,), generator=gen, device=gen.device))
        labels.append(check_label(label, num_classes))
    return torch.tensor(labels, dtype=torch.long, device=device)
