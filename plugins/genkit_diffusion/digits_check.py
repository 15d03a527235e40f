"""Are generated digits recognisable? A small scikit-learn classifier trained on the real
``digits`` data judges samples: the check the default model's test and its training
script share.

Real and generated images go through the same path (the real 8x8 digits are first
brought to the model's size exactly as training saw them), then both are averaged down
to 8x8, so the classifier sees the same blur on both sides.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from genkit.plugin import images_to_tensor, load_data


@dataclass
class Recognition:
    """How a classifier trained on real digits sees a set of samples."""

    n: int
    confident: float  # fraction whose top class probability is >= the threshold
    agree: float | None  # fraction whose predicted class is the label asked for
    classes: int  # distinct predicted classes among the confident samples
    real_accuracy: float  # the classifier's accuracy on held-out real digits
    predicted: list[int]

    def as_dict(self) -> dict[str, Any]:
        return {"n": self.n, "confident": round(self.confident, 3),
                "agree": None if self.agree is None else round(self.agree, 3),
                "classes": self.classes, "real_accuracy": round(self.real_accuracy, 3)}


def _features(images: torch.Tensor) -> np.ndarray:
    """``(N, 1, S, S)`` in [-1, 1] -> ``(N, 64)`` 8x8 features in [0, 1]."""
    small = F.adaptive_avg_pool2d(images.float(), 8)  # (N, 1, 8, 8)
    return ((small + 1.0) / 2.0).flatten(1).numpy()


def digits_classifier(size: int) -> tuple[Any, float]:
    """A classifier of real digits seen at ``size`` pixels (an RBF support-vector machine
    with calibrated probabilities: ~1 s to fit), and its accuracy on the held-out real
    test split."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.svm import SVC

    train, test = load_data("digits", "train"), load_data("digits", "test")
    clf = CalibratedClassifierCV(SVC(C=10.0), ensemble=False)
    clf.fit(_features(images_to_tensor(train, size, 1)), train.labels)
    accuracy = clf.score(_features(images_to_tensor(test, size, 1)), test.labels)
    return clf, float(accuracy)


def recognise(images: Sequence[Any], labels: Sequence[int | None] | None = None,
              threshold: float = 0.8) -> Recognition:
    """Classify PIL images ("L" mode, square) with :func:`digits_classifier`."""
    array = np.stack([np.asarray(im, dtype=np.float32) for im in images])  # (N, S, S)
    x = torch.from_numpy(array)[:, None] / 127.5 - 1.0  # (N, 1, S, S)
    clf, accuracy = digits_classifier(x.shape[-1])
    proba = clf.predict_proba(_features(x))  # (N, 10)
    predicted = proba.argmax(1)
    sure = proba.max(1) >= threshold
    agree = None
    if labels is not None and all(v is not None for v in labels):
        agree = float(np.mean(predicted == np.asarray(labels)))
    return Recognition(len(images), float(sure.mean()), agree,
                       len(set(predicted[sure].tolist())), accuracy, predicted.tolist())
