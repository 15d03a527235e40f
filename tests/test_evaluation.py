"""genkit.eval: the metrics themselves, the image evaluation on digits (real data far
better than noise, a generator in between, a collapsed generator flagged), features from a
local transformers model, text bits per character against a unigram model, and the
figures recorded into a checkpoint.

The feature classifier is cached once per test session in a temporary GENKIT_CACHE and
trained with fewer steps than the default, to stay fast on a loaded CPU.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

import genkit
from genkit.data.loading import load_data
from genkit.data.types import ImageData
from genkit.errors import ConfigError, DataError
from genkit.eval import features as eval_features
from genkit.eval.evaluate import evaluate
from genkit.eval.metrics import class_coverage, frechet_distance, knn_metrics, unigram_bits_per_char
from genkit.plugin import Generator

N = 200  # samples per evaluation: enough for FD to separate real, model and noise clearly
DEFAULT_DIFFUSION = Path(__file__).parents[1] / "plugins" / "genkit_diffusion" / "default"


@pytest.fixture(scope="module", autouse=True)
def feature_cache(tmp_path_factory: pytest.TempPathFactory):
    """A private cache folder and a shorter classifier training for this module."""
    old_cache, old_steps = os.environ.get("GENKIT_CACHE"), eval_features.CLASSIFIER_STEPS
    old_threads = torch.get_num_threads()
    os.environ["GENKIT_CACHE"] = str(tmp_path_factory.mktemp("genkit-cache"))
    eval_features.CLASSIFIER_STEPS = 250
    torch.set_num_threads(1)
    yield Path(os.environ["GENKIT_CACHE"])
    torch.set_num_threads(old_threads)
    eval_features.CLASSIFIER_STEPS = old_steps
    if old_cache is None:
        os.environ.pop("GENKIT_CACHE", None)
    else:
        os.environ["GENKIT_CACHE"] = old_cache


# ------------------------------------------------------------------ stand-in generators
@dataclass
class NoConfig:
    """No hyper-parameters."""


class GaussianPixels(Generator):
    """A weak but real generative model: one Gaussian (mean, full covariance) over the
    64 pixels of the digits train split. Its samples are blurry, noisy digit shapes."""

    Config = NoConfig
    name = "gaussian-pixels"

    def build(self) -> None:
        pixels = load_data("digits", "train").images.reshape(-1, 64).astype(np.float64)
        w, v = np.linalg.eigh(np.cov(pixels, rowvar=False))
        self.mean, self.root = pixels.mean(0), v * np.sqrt(np.clip(w, 0, None))  # (64,), (64, 64)

    def generate(self, seeds, conditions, options, stream=None):
        from PIL import Image

        out = []
        for seed in seeds:
            x = self.mean + self.root @ np.random.default_rng(seed).standard_normal(64)
            out.append(Image.fromarray(np.clip(x, 0, 255).astype(np.uint8).reshape(8, 8), "L"))
        return out


class OneDigit(Generator):
    """A collapsed generator: every sample is the same real digit."""

    Config = NoConfig
    name = "one-digit"

    def build(self) -> None:
        self.image = load_data("digits", "train").images[0, :, :, 0]  # (8, 8) uint8

    def generate(self, seeds, conditions, options, stream=None):
        from PIL import Image

        return [Image.fromarray(self.image, "L") for _ in seeds]


@pytest.fixture(scope="module")
def gaussian_result() -> dict:
    return evaluate(GaussianPixels(), data="digits", n=N, draws=2, device="cpu")


# ----------------------------------------------------------------------------- metrics
def test_frechet_distance_matches_the_closed_form() -> None:
    from scipy.linalg import sqrtm

    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 5)) @ rng.normal(size=(5, 5))
    b = rng.normal(loc=0.5, size=(300, 5)) * 2.0
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    expected = (((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(s_a) + np.trace(s_b)
                - 2 * np.trace(sqrtm(s_a @ s_b).real))
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)


def test_knn_metrics_on_known_manifolds() -> None:
    rng = np.random.default_rng(0)
    blob_a = rng.normal(size=(100, 2))
    blob_b = rng.normal(size=(100, 2)) + 100.0
    real = np.concatenate([blob_a, blob_b])
    same = knn_metrics(real, real)
    assert same["precision"] == same["recall"] == 1.0
    assert same["density"] == pytest.approx(4 / 3)  # its own ball and, on average, k others
    half = knn_metrics(real, blob_a + 0.01)  # realistic but covers one of two modes
    assert half["precision"] > 0.95 and 0.4 < half["recall"] < 0.6
    far = knn_metrics(real, rng.normal(size=(100, 2)) + 50.0)
    assert far["precision"] == far["recall"] == far["density"] == 0.0


def test_class_coverage_flags_collapse() -> None:
    balanced = class_coverage(list(range(10)) * 20, 10)
    assert balanced.classes_present == 10 and not balanced.collapsed
    assert balanced.effective_classes == pytest.approx(10.0)
    one = class_coverage([3] * 200, 10)
    assert one.collapsed and one.classes_present == 1 and one.top_class == "3"
    dominant = class_coverage([0] * 120 + list(range(10)) * 8, 10)  # all present, one > 50%
    assert dominant.classes_present == 10 and dominant.collapsed
    # a class that is 60% of the data is no collapse at 64%, but is at 90%
    data = [0.6] + [0.4 / 9] * 9
    assert not class_coverage([0] * 120 + list(range(10)) * 8, 10, data_shares=data).collapsed
    assert class_coverage([0] * 180 + list(range(10)) * 2, 10, data_shares=data).collapsed


def test_unigram_bits_per_char_is_exact() -> None:
    # counts a:3 b:1, vocabulary {a, b, unknown}: p(a) = 4/7, p(z) = 1/7 (add-one)
    bits = unigram_bits_per_char("aaab", "az")
    assert bits == pytest.approx(-(math.log2(4 / 7) + math.log2(1 / 7)) / 2)


# -------------------------------------------------------------------- image evaluation
def test_digits_real_data_beats_a_weak_generator_which_beats_noise(gaussian_result,
                                                                   feature_cache) -> None:
    rows = gaussian_result.rows
    real, model, noise = rows["real"].fd, rows["model"].fd, rows["noise"].fd
    assert 5 * real < model < noise / 2, rows  # far apart, in order
    assert noise > 20 * real
    assert rows["real"].recall > 0.8 and rows["noise"].recall < 0.3
    assert rows["real"].density > 0.7  # (noise can pass precision/density: see the docs)
    assert gaussian_result.reference["size"] == len(load_data("digits", "test"))
    features = gaussian_result.features
    assert features["kind"] == "classifier" and features["test_accuracy"] > 0.85
    cached = json.loads((Path(features["path"]) / "classifier.json").read_text())
    assert cached["test_accuracy"] == features["test_accuracy"]
    assert Path(features["path"]).parent.parent == feature_cache
    assert gaussian_result.coverage["real"].classes_present == 10
    json.dumps(gaussian_result.as_dict())  # JSON-ready
    report = _report(gaussian_result)
    assert "real (held-out train half, 2 draws)" in report and "noise" in report
    assert "WARNING" not in report


def test_the_classifier_is_trained_once_and_reused(gaussian_result) -> None:
    again = evaluate(GaussianPixels(), data="digits", n=N, draws=2, device="cpu")
    assert again.features["cached"] and not gaussian_result.features["cached"]
    assert again.rows == gaussian_result.rows  # same seed, same figures


def test_the_model_row_averages_draws_of_consecutive_samples(gaussian_result) -> None:
    """Draw 0 is samples 0..n-1 (the one-draw figure), draw 1 samples n..2n-1: with two
    draws the mean plus or minus the spread gives back the one-draw FD exactly."""
    result = evaluate(GaussianPixels(), data="digits", n=N, draws=2, model_draws=2, device="cpu")
    model, single = result.rows["model"], gaussian_result.rows["model"].fd
    assert model.draws == 2 and model.fd_std > 0
    assert min(abs(model.fd - model.fd_std - single), abs(model.fd + model.fd_std - single)) < 1e-6
    assert result.rows["real"] == gaussian_result.rows["real"]
    assert result.coverage["model"] == gaussian_result.coverage["model"]  # draw 0's
    assert "model (2 draws)" in _report(result)
    with pytest.raises(ConfigError, match="--model-draws must be at least 1, got 0"):
        evaluate(GaussianPixels(), data="digits", n=N, model_draws=0, device="cpu")


def test_a_collapsed_generator_is_flagged(gaussian_result) -> None:
    result = evaluate(OneDigit(), data="digits", n=N, draws=1, device="cpu")
    coverage = result.coverage["model"]
    assert coverage.collapsed and coverage.classes_present == 1
    assert coverage.top_share == 1.0
    assert result.rows["model"].recall < 0.05
    assert not gaussian_result.coverage["model"].collapsed
    assert "WARNING: coverage collapsed" in _report(result)


@pytest.mark.slow  # ~1-2 min on a loaded CPU; the GaussianPixels test covers "in between"
@pytest.mark.skipif(not (DEFAULT_DIFFUSION / "genkit.json").is_file(),
                    reason="the shipped default diffusion checkpoint is not there yet")
def test_the_default_diffusion_model_lands_between_real_and_noise(tmp_path: Path) -> None:
    import shutil

    checkpoint = shutil.copytree(DEFAULT_DIFFUSION, tmp_path / "default")  # never edit the shipped one
    result = evaluate(checkpoint, data="digits", n=N, draws=2, device="cpu", steps=20)
    rows = result.rows
    # a good model sits within the real floor's spread (n=500: model 14.0, real 14.8 +- 4.4)
    assert 0.5 * rows["real"].fd < rows["model"].fd < rows["noise"].fd / 10, rows
    assert rows["model"].recall > 0.5 > rows["noise"].recall
    coverage = result.coverage["model"]
    assert not coverage.collapsed and coverage.label_accuracy > 0.8


def test_unlabelled_data_without_features_is_a_clear_error() -> None:
    images = load_data("digits", "train").images
    with pytest.raises(DataError, match="--features"):
        evaluate(GaussianPixels(), data=ImageData(images), n=20, draws=1, device="cpu")


def test_features_from_a_local_transformers_model(tmp_path: Path) -> None:
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    torch.manual_seed(0)
    model = ViTModel(ViTConfig(image_size=16, patch_size=4, num_channels=3, hidden_size=32,
                               num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=64))
    model.save_pretrained(tmp_path / "vit")
    ViTImageProcessor(size={"height": 16, "width": 16}).save_pretrained(tmp_path / "vit")
    result = evaluate(GaussianPixels(), data="digits", n=100, draws=1, device="cpu",
                      features=tmp_path / "vit")
    assert result.features == {"kind": "pretrained", "path": str(tmp_path / "vit"),
                                  "model_type": "vit"}
    rows = result.rows
    assert rows["real"].fd < rows["noise"].fd / 3, rows
    assert result.coverage is not None  # classes still come from the small classifier
    with pytest.raises(DataError, match="cannot open"):
        evaluate(GaussianPixels(), data="digits", n=20, draws=1, features=tmp_path)


# -------------------------------------------------------------- checkpoints and the CLI
def test_figures_are_recorded_in_the_checkpoint_and_its_model_card(toy_registry,
                                                                   tmp_path: Path) -> None:
    from click.testing import CliRunner

    from genkit.cli import cli
    from genkit.store.checkpoint import read_manifest

    genkit.create("toy").save(tmp_path / "ckpt")
    out = CliRunner().invoke(cli, ["eval", str(tmp_path / "ckpt"), "--data", "digits",
                                   "-n", "60", "--device", "cpu", "--model-draws", "2",
                                   "--json"])
    assert out.exit_code == 0, out.output
    result = json.loads(out.output)
    assert result["rows"]["model"]["draws"] == 2 and result["rows"]["model"]["fd_std"] > 0
    manifest = read_manifest(tmp_path / "ckpt")  # still a valid checkpoint
    recorded = manifest["evaluation"]
    assert recorded["fd"] == result["rows"]["model"]["fd"] and recorded["n"] == 60
    assert recorded["fd_real"] < recorded["fd_noise"]
    card = (tmp_path / "ckpt" / "README.md").read_text()
    assert "## Evaluation" in card and f"- fd_noise: {recorded['fd_noise']:.4g}" in card
    info = CliRunner().invoke(cli, ["info", str(tmp_path / "ckpt")])
    assert "evaluation" in info.output and "fd_real=" in info.output


# --------------------------------------------------------------------------------- text
def test_a_trained_text_model_beats_the_unigram_baseline(tmp_path: Path) -> None:
    try:
        g = genkit.create("gpt", tokenizer="char", n_layer=1, n_head=2, n_embd=32,
                          block_size=32)
    except genkit.PluginError as exc:
        pytest.skip(f"the gpt plugin is not available: {exc}")
    g.train("pydoc", steps=150, batch_size=16, lr=1e-2, device="cpu", progress=False,
            log_with="none", out=tmp_path / "run")
    result = evaluate(tmp_path / "run", data="pydoc", device="cpu")
    model, unigram = result.rows["model"], result.rows["unigram"]
    assert result.beats_baseline and model["val_bpc"] < unigram["val_bpc"] - 0.3, result
    assert 4.0 < unigram["val_bpc"] < 5.5  # English-like text: about 4.5 bits per character
    assert model["val_ppl"] == pytest.approx(math.exp(model["val_loss"]), rel=1e-6)
    assert genkit.load(tmp_path / "run", device="cpu").source_dir is not None
    manifest = json.loads((tmp_path / "run" / "model" / "genkit.json").read_text())
    assert manifest["evaluation"]["unigram_bpc"] == unigram["val_bpc"]
    assert "beats the unigram baseline" in _report(result)


def _report(result) -> str:
    return result.report()


# ------------------------------------------------------------------ the collapse watch
class RealDigits(Generator):
    """Not a model: sample i is real held-out digit i (what a perfect generator draws)."""

    Config = NoConfig
    name = "real-digits"

    def build(self) -> None:
        self.images = load_data("digits", "test").images[..., 0]  # (N, 8, 8) uint8

    def generate(self, seeds, conditions, options, stream=None):
        from PIL import Image

        return [Image.fromarray(self.images[s % len(self.images)], "L") for s in seeds]


@dataclass
class ClassesConfig:
    num_classes: int = 4


class RealOfClass(Generator):
    """Not a model: a real image of the class asked for (a perfect conditional generator);
    ``ignore_label`` draws the classes in turn whatever is asked."""

    Config = ClassesConfig
    name = "real-of-class"
    conditions = ("label",)
    ignore_label = False

    def build(self) -> None:
        self.data = imbalanced_digits()

    def generate(self, seeds, conditions, options, stream=None):
        from PIL import Image

        out = []
        for seed, condition in zip(seeds, conditions):
            label = seed % 4 if self.ignore_label else condition["label"]
            pool = np.flatnonzero(self.data.labels == label)
            image = self.data.images[pool[np.random.default_rng(seed).integers(len(pool))]]
            out.append(Image.fromarray(image[..., 0], "L"))
        return out


def imbalanced_digits() -> ImageData:
    """Digits 0-3, three quarters of them zeros (as real data sets are: unbalanced)."""
    import dataclasses

    data = load_data("digits", "all")
    keep = np.concatenate([np.flatnonzero(data.labels == 0)[:150]]
                          + [np.flatnonzero(data.labels == c)[:17] for c in (1, 2, 3)])
    return dataclasses.replace(data, images=data.images[keep], labels=data.labels[keep],
                               num_classes=4, class_names=None, name="imbalanced-digits")


def test_labels_asked_follow_the_data_s_class_proportions() -> None:
    from genkit.eval.labels import proportional_labels

    labels = proportional_labels(np.array([0] * 60 + [1] * 20 + [2] * 20), 3, 10)
    assert np.bincount(labels).tolist() == [6, 2, 2]
    assert labels[:5] == [0, 0, 1, 2, 0]  # interleaved: a prefix keeps the proportions
    assert proportional_labels(np.repeat(np.arange(4), 5), 4, 10) == [0, 1, 2, 3] * 2 + [0, 1]


def test_a_perfect_conditional_generator_scores_the_floor_on_unbalanced_classes() -> None:
    """Asking each class equally often would compare another mixture with the data: a
    generator of real images of the classes in turn scores far above the floor."""
    data = imbalanced_digits()
    perfect = evaluate(RealOfClass(), data=data, n=N, draws=2, device="cpu")
    in_turn = RealOfClass()
    in_turn.ignore_label = True
    uniform = evaluate(in_turn, data=data, n=N, draws=2, device="cpu")
    real = perfect.rows["real"].fd
    assert perfect.rows["model"].fd < 2 * real, perfect.rows
    assert uniform.rows["model"].fd > 3 * perfect.rows["model"].fd, uniform.rows
    assert perfect.coverage["model"].label_accuracy > 0.9
    assert "proportions" in perfect.conditioning
    assert not perfect.coverage["model"].collapsed  # three quarters zeros, as the data
    # per class, each against the test images of that class: the wrong classes show
    assert set(perfect.class_fd) == {"0", "1", "2", "3"}
    assert all(v["model"] < 10 for v in perfect.class_fd.values()), perfect.class_fd
    assert all(v["model"] > 100 for v in uniform.class_fd.values()), uniform.class_fd
    assert "FD per class" in perfect.report()
    assert perfect.as_dict()["class_fd"] == perfect.class_fd


def test_the_collapse_watch_fires_on_a_collapsed_generator_and_not_on_real_data() -> None:
    from genkit.eval.watch import TrainingWatch, collapse_warning

    train, test = load_data("digits", "train"), load_data("digits", "test")
    watch = TrainingWatch(train, test, image_size=8, device=torch.device("cpu"), n=100)
    collapsed_figures, collapsed = watch.measure(OneDigit())
    real_figures, real = watch.measure(RealDigits())
    assert collapsed.collapsed and collapsed.classes_present == 1
    assert "mode collapse" in collapse_warning(collapsed, step=500)
    assert not real.collapsed and real.classes_present == 10
    assert collapse_warning(real, step=500) is None
    assert real_figures["fd"] < collapsed_figures["fd"] / 5
