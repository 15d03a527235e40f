"""``genkit eval``: how close a generator comes to held-out data, beside a floor and a baseline.

A distance reported alone means little, so every figure is printed beside the same figure
for real held-out data (the floor a perfect model would reach at the same n) and for a
trivial baseline (a model that learnt nothing).

Images: features from :mod:`genkit.eval.features`; the reference set is the whole test
split, fixed (digits: 360 images); Fréchet distance (FD), precision / recall (k-NN
manifolds, Kynkäänniemi et al. 2019, k=3) and density (Naeem et al. 2020) on the same
features, with both sets cut to the reference size; class coverage under the classifier.
Rows: ``real`` (n images of the other half of the train split, which the classifier
never saw: the floor), ``model`` (n samples drawn with ``seed``), ``noise`` (n
uniform-noise images: the baseline). The real and noise rows are averaged over ``draws``
draws, the model row over ``model_draws`` (default 1: one FD at n is itself a draw, so a
model compared with the floor, or with another model, is judged more surely on several).
FD depends strongly on n: compare figures only at the same n.

Text: held-out loss, perplexity and bits per character of the model on the test split
(the generator's own ``evaluate``), beside a character unigram model fitted on the train
split. Bits per character do not depend on the tokenizer, so the two compare directly.

When given a checkpoint directory, :func:`evaluate` records its figures in the
checkpoint's ``genkit.json`` (``"evaluation"``) and rewrites its ``README.md`` model card.
"""

from __future__ import annotations

import datetime as _dt
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genkit.contract import GeneratorContract
from genkit.data.lazy import materialise
from genkit.data.loading import load_data
from genkit.data.types import ImageData
from genkit.devices import resolve_device
from genkit.errors import CheckpointError, ConfigError, DataError
from genkit.eval.features import (
    MAX_FEATURE_SIZE,
    Extractor,
    batched,
    classifier_extractor,
    feature_classifier,
    num_classes_of,
    pretrained_extractor,
    split_train,
    to_input,
)
from genkit.eval.labels import asked_labels
from genkit.eval.metrics import (
    class_coverage,
    data_class_shares,
    frechet_distance,
    knn_metrics,
    unigram_bits_per_char,
)
from genkit.eval.results import ClassCoverage, EvalResult, ImageScores
from genkit.fs import atomic_write_text
from genkit.hub import hub_cache
from genkit.imaging import images_to_uint8
from genkit.sample.plan import iter_samples
from genkit.store.checkpoint import MANIFEST, load_checkpoint, read_manifest, resolve_checkpoint_dir
from genkit.store.modelcard import write_model_card

DEFAULT_DRAWS = 3
MIN_SAMPLES = 10
MAX_EVAL_IMAGES = 10_000  # rows of a large data set decoded for evaluation


def evaluate(path_or_generator: str | Path | GeneratorContract, data: Any = None, n: int = 500,
             seed: int = 0, batch_size: int | None = None, device: Any = "auto",
             features: str | Path | None = None, draws: int = DEFAULT_DRAWS,
             model_draws: int = 1, record: bool = True, **sample_options: Any) -> EvalResult:
    """Sample-quality figures of a generator against held-out data.

    Args:
        path_or_generator: a checkpoint or run directory, or a generator object.
        data: the data source (default: the one the checkpoint was trained on).
        n: images to generate (image models); FD depends on n, so compare at equal n.
        seed: base seed of the samples (and of the real and noise draws).
        batch_size: generation batch size.
        device: where the generator (when loaded here) and feature networks run.
        features: a local transformers image model directory for the image features.
        draws: draws of n averaged for the real and noise rows.
        model_draws: draws of n samples averaged for the model row: samples 0 to n-1 of
            ``seed``, then n to 2n-1, ... (draw 0 is the one-draw figure). The per-class
            figures and the class coverage are draw 0's.
        record: write the figures into the checkpoint's ``genkit.json`` and model card
            (only when ``path_or_generator`` is a checkpoint directory).
        **sample_options: the generator's sampling options (``steps=50``, ...).

    Returns:
        An :class:`EvalResult` (``.as_dict()`` for JSON, ``.report()`` for the table).
    """
    if n < MIN_SAMPLES:
        raise ConfigError(f"-n {n} is too few for a Fréchet distance; use at least "
                          f"{MIN_SAMPLES} (500 or more for figures worth comparing)")
    for flag, value in (("--draws", draws), ("--model-draws", model_draws)):
        if value < 1:
            raise ConfigError(f"{flag} must be at least 1, got {value}")
    start = time.perf_counter()
    generator, directory = _resolve_generator(path_or_generator, device)
    spec = _data_spec(generator, data)
    torch_device = generator.device if directory is None else resolve_device(device)
    if generator.modality == "text":
        if features is not None or model_draws != 1:
            raise ConfigError("--features and --model-draws are for image models; drop them "
                              "to evaluate text")
        result = _evaluate_text(generator, spec)
    else:
        result = _evaluate_images(generator, spec, n, seed, batch_size, torch_device,
                                  features, draws, model_draws, sample_options)
    result.checkpoint = str(directory) if directory else None
    result.seconds = round(time.perf_counter() - start, 2)
    result.date = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    if record and directory is not None and not directory.resolve().is_relative_to(
            hub_cache().resolve()):  # a Hub snapshot is a cache, not the user's checkpoint
        result.record_attempted = True
        result.recorded = _record(directory, result)
    return result


def _resolve_generator(source: Any, device: Any) -> tuple[GeneratorContract, Path | None]:
    """The generator, and its checkpoint directory when ``source`` is a path."""
    if isinstance(source, GeneratorContract):
        return source, None
    if not isinstance(source, (str, Path)):
        raise CheckpointError("evaluate() takes a checkpoint directory or a generator")
    directory = resolve_checkpoint_dir(source)
    return load_checkpoint(directory, device=device), directory


def _data_spec(generator: GeneratorContract, data: Any) -> Any:
    """The data to evaluate against: given, else what training used, else the default."""
    if data is not None:
        return data
    trained_on = (generator.training_summary or {}).get("data")
    spec = trained_on or generator.default_data
    if not spec:
        raise DataError(f"no data source known for {generator.name!r}; pass --data SOURCE")
    return spec


def _load_splits(spec: Any, modality: str, channels: int | None = None) -> tuple[Any, Any]:
    """The train and test splits, decoded in memory (a lazy folder or a stream: at most
    :data:`MAX_EVAL_IMAGES` rows, a fixed seeded subset)."""
    train, test = load_data(spec, "train"), load_data(spec, "test")
    if modality == "image":
        train = materialise(train, max_n=MAX_EVAL_IMAGES, channels=channels)
        test = materialise(test, max_n=MAX_EVAL_IMAGES, channels=channels)
    if train.modality != modality:
        raise DataError(f"data {train.name!r} holds {train.modality} data but the generator "
                        f"makes {modality}; pass a matching --data")
    return train, test


# ----------------------------------------------------------------------------- images
def _evaluate_images(generator: GeneratorContract, spec: Any, n: int, seed: int,
                     batch_size: int | None, device: torch.device,
                     features: str | Path | None, draws: int, model_draws: int,
                     options: dict[str, Any]) -> EvalResult:
    """Draw n samples (``model_draws`` times) and score them, the train split and noise
    against the test split."""
    train, test = _load_splits(spec, "image", getattr(generator.config, "channels", None))
    channels = int(train.images.shape[-1])
    samples, conditioning, asked = _draw_samples(generator, train, n, model_draws, seed,
                                                 batch_size, options)
    if not samples or not hasattr(samples[0], "size"):
        raise DataError("the generator returned no images to evaluate")
    pixels = images_to_uint8(samples)  # (model_draws * n, H, W, C)
    fake_draws = pixels.reshape(model_draws, n, *pixels.shape[1:])
    fake = fake_draws[0]
    via = int(fake.shape[1])
    feature_size = min(via, MAX_FEATURE_SIZE)

    def as_input(images: np.ndarray) -> torch.Tensor:
        return to_input(images, via, feature_size, channels)

    fit, held = split_train(train)
    classifier, info = (feature_classifier(fit, test, via, channels, device, num_classes_of(train))
                        if train.labels is not None or features is None else (None, None))
    extract, feature_info = (pretrained_extractor(features, device) if features is not None
                             else classifier_extractor(classifier, info, device))
    reference = extract(as_input(test.images))  # (R, D)
    rows = {"real": _score_draws(lambda d: _real_draw(held, n, seed, d), as_input, extract,
                                 reference, draws, seed),
            "model": _score_draws(lambda d: fake_draws[d], as_input, extract, reference,
                                  model_draws, seed),
            "noise": _score_draws(lambda d: _noise_draw(n, via, channels, seed, d), as_input,
                                  extract, reference, draws, seed)}
    class_fd = _class_fds(extract, as_input, fake, asked, held, test, reference, seed)
    coverage = None
    if classifier is not None:
        sets = {"real": _real_draw(held, n, seed, 0), "model": fake,
                "noise": _noise_draw(n, via, channels, seed, 0)}
        coverage = _coverage_rows(classifier, train, num_classes_of(train),
                                  sets, asked, as_input, device)
    return EvalResult(
        modality="image", generator=generator.name, checkpoint=None, data=train.name,
        n=n, seed=seed, draws=draws, image_size=via, conditioning=conditioning,
        features=feature_info,
        reference={"split": "test", "size": len(test), "sampling": "whole split, fixed"},
        real_sampling=(f"the half of the train split the classifier did not see "
                       f"({len(held)} images), "
                       + ("without replacement" if n <= len(held) else "with replacement")),
        rows=rows, coverage=coverage, class_fd=class_fd)


def _draw_samples(generator: GeneratorContract, train: ImageData, n: int, draws: int,
                  seed: int, batch_size: int | None,
                  options: dict[str, Any]) -> tuple[list[Any], str, list[int] | None]:
    """``draws`` x n samples; a label-conditional model is asked for the classes in the
    training split's proportions (:mod:`genkit.eval.labels`), the same n labels in each
    draw (a sample's condition cycles with its index). Returns the n labels of a draw."""
    labels = asked_labels(generator, train, n)
    samples = [s.output for s in iter_samples(generator, n=n * draws, seed=seed,
                                              batch_size=batch_size, labels=labels, **options)]
    if labels is None:
        return samples, "none", None
    return samples, "labels in the training split's class proportions", labels


def _class_fds(extract: Extractor, as_input: Callable[[np.ndarray], Any], fake: np.ndarray,
               asked: list[int] | None, held: ImageData, test: ImageData,
               reference: np.ndarray, seed: int) -> dict[str, dict[str, float]] | None:
    """For a model asked for labels: per class, the FD of the samples asked for it and of
    as many real held-out images of it, each against the test images of that class.
    One overall FD hides a model that draws some classes well and one badly."""
    if asked is None or test.labels is None or held.labels is None:
        return None
    asked_array, model = np.asarray(asked), extract(as_input(fake))  # (n,), (n, D)
    rng = np.random.default_rng([seed, 4])
    names = test.class_names or held.class_names
    out = {}
    for c in np.unique(asked_array):
        ref, k = reference[test.labels == c], int((asked_array == c).sum())
        pool = np.flatnonzero(held.labels == c)
        if k < MIN_SAMPLES or len(ref) < MIN_SAMPLES or not len(pool):
            continue  # too few for a covariance
        real = held.images[rng.choice(pool, size=k, replace=k > len(pool))]
        name = names[c] if names and c < len(names) else str(int(c))
        out[name] = {"model": frechet_distance(model[asked_array == c], ref),
                     "real": frechet_distance(extract(as_input(real)), ref)}
    return out or None


def _real_draw(train: ImageData, n: int, seed: int, draw: int) -> np.ndarray:
    rng = np.random.default_rng([seed, draw, 1])
    index = rng.choice(len(train), size=n, replace=n > len(train))
    return train.images[index]


def _noise_draw(n: int, size: int, channels: int, seed: int, draw: int) -> np.ndarray:
    rng = np.random.default_rng([seed, draw, 2])
    return rng.integers(0, 256, size=(n, size, size, channels), dtype=np.uint8)


def _score_draws(make: Callable[[int], np.ndarray], as_input: Callable[[np.ndarray], Any],
                 extract: Extractor, reference: np.ndarray, draws: int,
                 seed: int) -> ImageScores:
    """FD, precision and recall of ``draws`` image sets against ``reference``: mean (and
    the FD's standard deviation across draws)."""
    fds, knn = [], []
    for d in range(draws):
        feats = extract(as_input(make(d)))  # (n, D)
        fds.append(frechet_distance(feats, reference))
        m = min(len(feats), len(reference))
        pick = np.random.default_rng([seed, d, 3]).choice(len(feats), size=m, replace=False)
        knn.append(knn_metrics(reference, feats[pick]))
    return ImageScores(fd=float(np.mean(fds)), fd_std=float(np.std(fds)) if draws > 1 else None,
                       **{k: float(np.mean([m[k] for m in knn])) for k in knn[0]}, draws=draws)


def _coverage_rows(classifier: torch.nn.Module, train: ImageData, num_classes: int,
                   sets: dict[str, np.ndarray], asked: list[int] | None,
                   as_input: Callable[[np.ndarray], Any],
                   device: torch.device) -> dict[str, ClassCoverage]:
    """Class coverage of each image set (the model's samples, a real draw, a noise draw)
    against the classes of ``train``; with labels asked of the model, the share
    classified as the label asked for."""
    rows, shares = {}, data_class_shares(train.labels, num_classes)
    for key, images in sets.items():
        predicted = batched(classifier, as_input(images), device).argmax(1).numpy()  # (N,)
        rows[key] = class_coverage(predicted, num_classes, train.class_names, shares)
        if key == "model" and asked is not None:
            rows[key].label_accuracy = float(np.mean(predicted == np.asarray(asked)))
    return rows


# ------------------------------------------------------------------------------- text
def _evaluate_text(generator: GeneratorContract, spec: Any) -> EvalResult:
    """The model's held-out loss, perplexity and bits/char beside a unigram model."""
    train, test = _load_splits(spec, "text")
    with generator.inference():
        figures = generator.evaluate(test)
    if not figures or "val_bpc" not in figures:
        raise DataError(f"generator {generator.name!r} reports no held-out bits per character "
                        "(its evaluate() returns none); it cannot be scored on text")
    unigram = unigram_bits_per_char(train.text, test.text)
    model = {k: float(v) for k, v in figures.items()}
    return EvalResult(
        modality="text", generator=generator.name, checkpoint=None, data=train.name,
        reference={"split": "test", "size": len(test), "unit": "characters"},
        rows={"model": model, "unigram": {"val_bpc": unigram, "char_ppl": 2.0 ** unigram}},
        beats_baseline=model["val_bpc"] < unigram)


# --------------------------------------------------------------------------- recording
def _record(directory: Path, result: EvalResult) -> str | None:
    """Write the figures into ``genkit.json`` and the model card, atomically. Returns the
    path written, or None when the directory cannot be written (an installed package)."""
    manifest = read_manifest(directory)
    manifest["evaluation"] = result.summary()
    try:
        atomic_write_text(directory / MANIFEST, json.dumps(manifest, indent=2) + "\n")
        write_model_card(directory, manifest)
    except OSError:
        return None
    return str(directory / MANIFEST)
