"""Watching an image generator while it trains: FD and class coverage every evaluation.

The figures are the same as ``genkit eval``'s, on fewer samples (``n``, 256 by default)
drawn with a fixed seed, so successive evaluations of one run compare with each other:
the Fréchet distance against the held-out split, and the class histogram of the samples
under the evaluation classifier. Coverage sees what a within-batch diversity figure
cannot: a generator that makes good images of only some classes. A warning goes out when
fewer than half the classes appear or one class takes more than half of the samples.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from genkit.contract import GeneratorContract
from genkit.data.types import ImageData
from genkit.eval.features import (
    MAX_FEATURE_SIZE,
    batched,
    classifier_extractor,
    feature_classifier,
    num_classes_of,
    split_train,
    to_input,
)
from genkit.eval.labels import asked_labels
from genkit.eval.metrics import class_coverage, data_class_shares, frechet_distance
from genkit.eval.results import ClassCoverage
from genkit.imaging import images_to_uint8
from genkit.sample.plan import iter_samples

WATCH_SEED = 12345  # the samples of every evaluation of a run come from the same seeds


class TrainingWatch:
    """FD and class coverage of a generator's samples, against ``test`` data.

    Build it once per run (the classifier is trained once and cached); call
    :meth:`measure` at each evaluation.
    """

    def __init__(self, train: ImageData, test: ImageData, image_size: int,
                 device: torch.device, n: int = 256) -> None:
        self.n, self.device, self.size = n, device, image_size
        self.train = train  # its class proportions: the labels asked of a generator
        self.channels = int(train.images.shape[-1])
        self.feature_size = min(image_size, MAX_FEATURE_SIZE)
        self.num_classes = num_classes_of(train)
        self.class_names = train.class_names
        fit, _ = split_train(train)
        self.classifier, info = feature_classifier(fit, test, image_size, self.channels,
                                                   device, self.num_classes)
        self.extract, _ = classifier_extractor(self.classifier, info, device)
        self.reference = self.extract(self._input(test.images))  # (R, D)

    @classmethod
    def applies(cls, generator: GeneratorContract, train: Any) -> bool:
        """An image generator trained on labelled images (the classifier needs labels)."""
        return (generator.modality == "image" and isinstance(train, ImageData)
                and train.labels is not None and len(train) >= 20)

    def _input(self, images: np.ndarray) -> torch.Tensor:
        return to_input(images, self.size, self.feature_size, self.channels)

    def measure(self, generator: GeneratorContract) -> tuple[dict[str, float], ClassCoverage]:
        """``{"fd": ..., "classes": ..., "top_share": ...}`` and the coverage record."""
        labels = asked_labels(generator, self.train, self.n)
        samples = [s.output for s in iter_samples(generator, n=self.n, seed=WATCH_SEED,
                                                  labels=labels)]
        images = images_to_uint8(samples)
        x = self._input(images)
        fd = frechet_distance(self.extract(x), self.reference)
        predicted = batched(self.classifier, x, self.device).argmax(1).numpy()  # (n,)
        coverage = class_coverage(predicted, self.num_classes, self.class_names,
                                  data_class_shares(self.train.labels, self.num_classes))
        if labels is not None:
            coverage.label_accuracy = float(np.mean(predicted == np.asarray(labels)))
        figures = {"fd": fd, "classes": float(coverage.classes_present),
                   "top_share": coverage.top_share}
        if coverage.label_accuracy is not None:
            figures["label_accuracy"] = coverage.label_accuracy
        return figures, coverage


def collapse_warning(coverage: ClassCoverage, step: int) -> str | None:
    """One warning line when coverage collapsed, else None."""
    if not coverage.collapsed:
        return None
    return (f"Warning: step {step}: samples cover {coverage.classes_present} of "
            f"{coverage.num_classes} classes, class {coverage.top_class} takes "
            f"{coverage.top_share:.0%} (mode collapse?)")
