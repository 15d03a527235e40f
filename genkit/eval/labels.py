"""The labels a class-conditional generator is asked for when it is evaluated.

A conditional generator's samples are compared with the data, whose classes need not be
balanced (dcss_tiles: 42% dngn, 18% gui). Asking for every class equally often would
compare a different mixture with the data: even real images drawn that way score well
above the real-data floor, because the class means are far apart in the classifier's
features. So the labels follow the training split's class proportions: n is shared out
by largest remainder, and the sequence interleaves the classes so any prefix (the first
batch of a watch, say) is also near the proportions. Equal counts give 0, 1, .., K-1 in
turn.
"""

from __future__ import annotations

import numpy as np

from genkit.contract import GeneratorContract
from genkit.data.types import ImageData
from genkit.eval.metrics import data_class_shares


def proportional_labels(labels: np.ndarray, num_classes: int, n: int) -> list[int]:
    """n labels in the proportions of ``labels`` ``(N,)``, interleaved (see the module)."""
    shares = data_class_shares(labels, num_classes)
    if shares.sum() == 0:
        shares[:] = 1.0 / num_classes
    exact = n * shares / shares.sum()
    share = np.floor(exact).astype(np.int64)
    remainder = exact - share
    for c in sorted(range(num_classes), key=lambda c: (-remainder[c], c))[:n - share.sum()]:
        share[c] += 1
    # the j-th sample of class c sits at (j + 0.5) / share[c] of the way along; ties keep
    # class order, so equal shares give 0, 1, .., K-1 in turn
    slots = [((j + 0.5) / share[c], c) for c in range(num_classes) for j in range(share[c])]
    return [c for _, c in sorted(slots)]


def asked_labels(generator: GeneratorContract, train: ImageData, n: int) -> list[int] | None:
    """The n labels to ask of ``generator`` (None: it takes no label, or the data has none)."""
    num_classes = getattr(generator.config, "num_classes", 0) or 0
    if "label" not in generator.accepted_conditions() or not num_classes or train.labels is None:
        return None
    return proportional_labels(train.labels, num_classes, n)
