"""Fixtures shared by the plugin tests."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import genkit
from genkit.plugin import images_to_tensor

CONFIDENT = 0.8  # top class probability that counts as "recognised"


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread: on a loaded 2-core machine two threads make tiny steps ~20x
    slower (measured: 40 VAE steps 2.3 s at 1 thread, 42 s at 2)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def digits_judge():
    """Judge PIL samples with an RBF SVM (calibrated probabilities) fitted on the real
    digits at the samples' size (the same upscaling training used). Returns the fraction
    confidently recognised, the classes seen, the agreement with asked labels, and the
    spread of the samples within each predicted class relative to that of real digits
    within their class (near 0: each class collapsed to a few images)."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.svm import SVC

    train, test = genkit.load_data("digits", "train"), genkit.load_data("digits", "test")
    fitted = {}

    def judge(images, labels=None):
        size = images[0].size[0]
        if size not in fitted:
            clf = CalibratedClassifierCV(SVC(C=10.0), ensemble=False)
            clf.fit(images_to_tensor(train, size, 1).flatten(1).numpy(), train.labels)
            real = images_to_tensor(test, size, 1).flatten(1)  # (N, S*S)
            real_spread = within_class_spread(real, test.labels)
            fitted[size] = (clf, clf.score(real.numpy(), test.labels), real_spread)
        clf, real_accuracy, real_spread = fitted[size]
        x = torch.from_numpy(np.stack([np.asarray(im, np.float32) for im in images]))
        x = (x / 127.5 - 1).flatten(1)  # (N, S*S) in [-1, 1]
        proba = clf.predict_proba(x.numpy())  # (N, 10)
        predicted, sure = proba.argmax(1), proba.max(1) >= CONFIDENT
        return {"n": len(images), "confident": round(float(sure.mean()), 3),
                "classes": len(set(predicted[sure].tolist())),
                "agree": None if labels is None else round(float(np.mean(predicted == labels)), 3),
                "class_diversity": round(within_class_spread(x, predicted) / real_spread, 3),
                "real_accuracy": round(real_accuracy, 3)}

    return judge


def within_class_spread(x: torch.Tensor, labels) -> float:
    """Mean L2 distance between pairs of rows of ``x`` ``(N, D)`` that share a label."""
    y = torch.as_tensor(np.asarray(labels))
    same = (y[:, None] == y[None, :]) & ~torch.eye(len(y), dtype=torch.bool)
    return float(torch.cdist(x, x)[same].mean())
