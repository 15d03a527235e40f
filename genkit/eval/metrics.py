"""The figures: Fréchet distance, precision / recall / density, class coverage, and a
character unigram baseline for text. Pure functions of arrays and strings."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np
import torch

from genkit.errors import ConfigError
from genkit.eval.results import ClassCoverage

KNN_K = 3


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to feature sets ``a`` (N, D), ``b`` (M, D).

    ``|mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^1/2)``; the trace of the matrix
    square root is taken from the eigenvalues of ``S_a^1/2 S_b S_a^1/2`` (symmetric, so no
    complex round-off as with ``scipy.linalg.sqrtm``). Computed in float64 with torch
    (which keeps to ``torch.set_num_threads``).
    """
    x = torch.as_tensor(a, dtype=torch.float64)
    y = torch.as_tensor(b, dtype=torch.float64)
    s_a, s_b = torch.atleast_2d(torch.cov(x.T)), torch.atleast_2d(torch.cov(y.T))  # (D, D)
    w, v = torch.linalg.eigh(s_a)
    root_a = (v * w.clamp(min=0).sqrt()) @ v.T  # (D, D)
    middle = root_a @ s_b @ root_a
    tr_root = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0).sqrt().sum()
    value = ((x.mean(0) - y.mean(0)) ** 2).sum() + s_a.trace() + s_b.trace() - 2 * tr_root
    return float(value.clamp(min=0))


def _knn_radii(x: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each row of ``x`` (N, D) to its k-th nearest other row: (N,)."""
    d = torch.cdist(x, x)  # (N, N), zero diagonal
    return d.kthvalue(k + 1, dim=1).values


def knn_metrics(real: np.ndarray, fake: np.ndarray, k: int = KNN_K) -> dict[str, float]:
    """Precision, recall (Kynkäänniemi et al. 2019) and density (Naeem et al. 2020).

    Each real row's ball reaches its k-th nearest real neighbour; the fake manifold is
    built the same way. Precision: the share of ``fake`` rows inside some real ball.
    Recall: the share of ``real`` rows inside some fake ball. Density: how many real balls
    hold a fake row, on average, over k (about 1 for real data). Precision is fooled by a
    few real outliers whose balls are large (noise can land in them); density is not.
    """
    r = torch.as_tensor(real, dtype=torch.float64)  # (R, D)
    f = torch.as_tensor(fake, dtype=torch.float64)  # (F, D)
    if len(r) <= k or len(f) <= k:
        raise ConfigError(f"precision/recall need more than k={k} samples on each side")
    cross = torch.cdist(r, f)  # (R, F)
    in_real = cross <= _knn_radii(r, k)[:, None]  # (R, F): fake j in real i's ball
    in_fake = cross <= _knn_radii(f, k)[None, :]  # (R, F): real i in fake j's ball
    return {"precision": float(in_real.any(0).double().mean()),
            "recall": float(in_fake.any(1).double().mean()),
            "density": float(in_real.sum()) / (k * len(f))}


def class_coverage(predicted: Sequence[int], num_classes: int,
                   class_names: Sequence[str] | None = None,
                   data_shares: Sequence[float] | None = None) -> ClassCoverage:
    """How samples spread over the classes: share per class, classes present, collapse
    (see :class:`genkit.eval.results.ClassCoverage`). ``data_shares``, the data's own
    class shares, raise the bar for a class the data itself gives more than half to."""
    counts = np.bincount(np.asarray(predicted, dtype=np.int64), minlength=num_classes)
    shares = counts / max(1, counts.sum())
    nonzero = shares[shares > 0]
    top = int(shares.argmax())
    present = int((counts > 0).sum())
    names = list(class_names) if class_names else [str(i) for i in range(num_classes)]
    return ClassCoverage(
        classes_present=present,
        num_classes=num_classes,
        effective_classes=float(np.exp(-(nonzero * np.log(nonzero)).sum())),
        top_class=names[top],
        top_share=float(shares[top]),
        collapsed=bool(present < num_classes / 2
                       or shares[top] > collapse_share(top, data_shares)),
        shares={names[i]: round(float(s), 4) for i, s in enumerate(shares)},
    )


def collapse_share(cls: int, data_shares: Sequence[float] | None = None) -> float:
    """The share of samples above which class ``cls`` dominating is called collapse: half,
    or half way from the data's own share of it to all (a class that is 60% of the data
    is not a collapse at 60%)."""
    if data_shares is None:
        return 0.5
    return max(0.5, (1.0 + float(data_shares[cls])) / 2)


def data_class_shares(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Each class's share of ``labels`` ``(N,)``."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes)
    return counts[:num_classes] / max(1, int(counts.sum()))


def unigram_bits_per_char(train: str, test: str) -> float:
    """Bits per character of ``test`` under a character unigram model of ``train``
    (add-one smoothing; characters never seen in training share one unknown slot)."""
    counts = Counter(train)
    total = len(train) + len(counts) + 1  # + one pseudo-count per symbol and for unknown
    bits = 0.0
    for char, k in Counter(test).items():
        bits -= k * math.log2((counts.get(char, 0) + 1) / total)
    return bits / max(1, len(test))

