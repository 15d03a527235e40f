"""Sample quality: how close a generator comes to held-out data, beside a floor and a baseline.

A distance reported alone means little, so every figure is printed beside the same figure
for real held-out data (the floor a perfect model would reach at the same n) and for a
trivial baseline (a model that learnt nothing).

Images (:func:`evaluate` on an image generator):

- Features come from a small CNN classifier trained on one half of the data source's
  train split, on the images brought to the generator's size exactly as its training
  saw them. It is
  trained once and cached in ``<cache>/features/<key>/`` (``$GENKIT_CACHE``, else
  ``$XDG_CACHE_HOME/genkit``, else ``~/.cache/genkit``) as ``classifier.safetensors`` +
  ``classifier.json`` (with its test accuracy). ``features=PATH`` uses a local
  transformers image model (``AutoModel`` + ``AutoImageProcessor``, pooled output)
  instead, e.g. an Inception-style network; coverage still uses the small classifier.
- The reference set is the whole test split, fixed (digits: 360 images).
- Fréchet distance (FD) between the features of n samples and the reference; precision
  and recall (k-nearest-neighbour manifolds, Kynkäänniemi et al. 2019, k=3) and density
  (Naeem et al. 2020, robust to real outliers) on the same features, with both sets cut
  to the reference size; class coverage (the classifier's class of every sample, how
  many classes appear, and a collapse flag).
- Rows: ``real`` (n images of the other half of the train split, which the classifier
  never saw, without replacement when it is large enough: the floor), ``model`` (n
  samples drawn with ``seed``), ``noise`` (n uniform-noise images: the baseline).
  The real and noise rows are averaged over ``draws`` draws; the model row is one set
  (generation is the expensive part; its spread is of the order of the real row's).
  FD depends strongly on n: compare figures only at the same n.

Text: held-out loss, perplexity and bits per character of the model on the test split
(the generator's own ``evaluate``), beside a character unigram model fitted on the train
split. Bits per character do not depend on the tokenizer, so the two compare directly.

When given a checkpoint directory, :func:`evaluate` records its figures in the
checkpoint's ``genkit.json`` (``"evaluation"``) and rewrites its ``README.md`` model card.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genkit.errors import CheckpointError, ConfigError, DataError

if TYPE_CHECKING:
    import numpy as np
    import torch

    from genkit.data import ImageData
    from genkit.generator import Generator

FEATURES_VERSION = 2  # bump when the classifier or its training changes: new cache key
KNN_K = 3
DEFAULT_DRAWS = 3
MAX_FEATURE_SIZE = 64  # larger images are averaged down to this side for the classifier
MIN_SAMPLES = 10
CLASSIFIER_STEPS = 500
CLASSIFIER_BATCH = 64
FEATURE_BATCH = 256

Extractor = Callable[["torch.Tensor"], "np.ndarray"]  # (N, C, S, S) in [-1, 1] -> (N, D)


# ------------------------------------------------------------------------------ cache
def cache_dir() -> Path:
    """genkit's cache folder: ``$GENKIT_CACHE``, else ``$XDG_CACHE_HOME/genkit``, else
    ``~/.cache/genkit``."""
    if os.environ.get("GENKIT_CACHE"):
        return Path(os.environ["GENKIT_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "genkit"


# ---------------------------------------------------------------------------- metrics
def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to feature sets ``a`` (N, D), ``b`` (M, D).

    ``|mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^1/2)``; the trace of the matrix
    square root is taken from the eigenvalues of ``S_a^1/2 S_b S_a^1/2`` (symmetric, so no
    complex round-off as with ``scipy.linalg.sqrtm``). Computed in float64 with torch
    (which keeps to ``torch.set_num_threads``).
    """
    import torch

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
    import torch

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
    import torch

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
                   class_names: Sequence[str] | None = None) -> dict[str, Any]:
    """How samples spread over the classes: share per class, classes present, collapse.

    ``collapsed`` is True when fewer than half the classes appear or one class takes more
    than half of the samples: signs of mode collapse. ``effective_classes`` is
    ``exp(entropy)`` of the shares (``num_classes`` when balanced, 1 when collapsed).
    """
    import numpy as np

    counts = np.bincount(np.asarray(predicted, dtype=np.int64), minlength=num_classes)
    shares = counts / max(1, counts.sum())
    nonzero = shares[shares > 0]
    top = int(shares.argmax())
    present = int((counts > 0).sum())
    names = list(class_names) if class_names else [str(i) for i in range(num_classes)]
    return {
        "classes_present": present,
        "num_classes": num_classes,
        "effective_classes": float(np.exp(-(nonzero * np.log(nonzero)).sum())),
        "top_class": names[top],
        "top_share": float(shares[top]),
        "collapsed": bool(present < num_classes / 2 or shares[top] > 0.5),
        "shares": {names[i]: round(float(s), 4) for i, s in enumerate(shares)},
    }


def unigram_bits_per_char(train: str, test: str) -> float:
    """Bits per character of ``test`` under a character unigram model of ``train``
    (add-one smoothing; characters never seen in training share one unknown slot)."""
    counts = Counter(train)
    total = len(train) + len(counts) + 1  # + one pseudo-count per symbol and for unknown
    bits = 0.0
    for char, k in Counter(test).items():
        bits -= k * math.log2((counts.get(char, 0) + 1) / total)
    return bits / max(1, len(test))


# --------------------------------------------------------------- feature classifier
def _feature_net(channels: int, size: int, num_classes: int) -> torch.nn.Module:
    """A small CNN: conv blocks halving the side down to 4 pixels, global average pool
    (the features, 32-64 wide), then a linear classifier head."""
    from torch import nn

    class FeatureNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            layers: list[nn.Module] = []
            c_in, c_out, side = channels, 32, size
            while True:
                layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(),
                           nn.Conv2d(c_out, c_out, 3, padding=1), nn.ReLU()]
                c_in = c_out
                if side <= 4:
                    break
                layers.append(nn.MaxPool2d(2))
                side, c_out = side // 2, min(2 * c_out, 64)
            self.body = nn.Sequential(*layers)
            self.dropout = nn.Dropout(0.2)
            self.head = nn.Linear(c_in, num_classes)

        def features(self, x: torch.Tensor) -> torch.Tensor:
            return self.body(x).mean((2, 3))  # (B, C, S, S) -> (B, D)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.dropout(self.features(x)))  # (B, K)

    return FeatureNet()


def _to_input(images: np.ndarray, via_size: int, feature_size: int, channels: int) -> torch.Tensor:
    """uint8 ``(N, H, W, C)`` -> float ``(N, channels, S, S)`` in [-1, 1]: resized to
    ``via_size`` as a generator's training sees data, then averaged down to the
    classifier's side ``feature_size`` when that is smaller."""
    import torch.nn.functional as F

    from genkit.data import ImageData, images_to_tensor

    x = images_to_tensor(ImageData(images), via_size, channels)  # (N, C, via, via)
    if feature_size != via_size:
        x = F.interpolate(x, size=(feature_size, feature_size), mode="bilinear",
                          antialias=True, align_corners=False)
    return x


def _classifier_key(train: ImageData, via_size: int, feature_size: int, channels: int,
                    num_classes: int) -> str:
    """Cache key: the training images and labels themselves, sizes and the version."""
    digest = hashlib.sha256(json.dumps({
        "version": FEATURES_VERSION, "data": train.name, "via_size": via_size,
        "feature_size": feature_size, "channels": channels, "num_classes": num_classes,
        "steps": CLASSIFIER_STEPS,
    }, sort_keys=True).encode())
    digest.update(train.images.tobytes())
    digest.update(train.labels.tobytes())  # type: ignore[union-attr]
    return digest.hexdigest()[:16]


def _train_classifier(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                      device: torch.device) -> None:
    """Adam on (x, y) for a fixed number of steps, with one-pixel random shifts."""
    import torch

    net.to(device).train()
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=CLASSIFIER_STEPS)
    rng = torch.Generator().manual_seed(0)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1), value=-1.0)  # (N, C, S+2, S+2)
    side = x.shape[-1]
    for _ in range(CLASSIFIER_STEPS):
        idx = torch.randint(len(x), (min(CLASSIFIER_BATCH, len(x)),), generator=rng)
        dy, dx = (int(v) for v in torch.randint(3, (2,), generator=rng))
        batch = padded[idx, :, dy:dy + side, dx:dx + side].to(device)  # (B, C, S, S)
        loss = torch.nn.functional.cross_entropy(net(batch), y[idx].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        schedule.step()
    net.eval()


def _batched(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, device: torch.device,
             batch: int = FEATURE_BATCH) -> torch.Tensor:
    import torch

    with torch.inference_mode():
        return torch.cat([fn(x[i:i + batch].to(device)).float().cpu()
                          for i in range(0, len(x), batch)])


def feature_classifier(train: ImageData, test: ImageData, via_size: int, channels: int,
                       device: torch.device, num_classes: int | None = None,
                       ) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The small CNN classifier of ``train`` for images seen at ``via_size``: loaded from
    the cache, or trained (once, seeded) and cached with its test-split accuracy.

    Returns:
        the network (eval mode, on ``device``) and its record (``classifier.json``, plus
        ``path`` and ``cached``).
    """
    num_classes = num_classes or _num_classes(train)
    feature_size = min(via_size, MAX_FEATURE_SIZE)
    key = _classifier_key(train, via_size, feature_size, channels, num_classes)
    directory = cache_dir() / "features" / key
    net = _seeded_net(channels, feature_size, num_classes)
    info = _load_cached(net, directory)
    cached = info is not None
    if info is None:
        net = _seeded_net(channels, feature_size, num_classes)  # a failed load may leave half
        info = _fit_and_cache(net, directory, train, test, via_size, feature_size, device)
    shown = str(directory).replace(str(Path.home()), "~", 1)  # no user paths in reports
    return net.to(device).eval(), {**info, "path": shown, "cached": cached}


def _seeded_net(channels: int, size: int, num_classes: int) -> torch.nn.Module:
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return _feature_net(channels, size, num_classes)


def _load_cached(net: torch.nn.Module, directory: Path) -> dict[str, Any] | None:
    """The cached record after loading the cached weights into ``net``; None when the
    cache has no complete, readable entry."""
    from safetensors.torch import load_model

    try:
        info = json.loads((directory / "classifier.json").read_text(encoding="utf-8"))
        load_model(net, str(directory / "classifier.safetensors"), device="cpu")
    except Exception:  # missing, damaged or from another layout: train again
        return None
    return info


def _fit_and_cache(net: torch.nn.Module, directory: Path, train: ImageData, test: ImageData,
                   via_size: int, feature_size: int, device: torch.device) -> dict[str, Any]:
    """Train ``net`` on ``train``, measure it on ``test``, write both files atomically."""
    import torch
    from safetensors.torch import save_model

    from genkit.checkpoint import atomic_directory

    channels = int(train.images.shape[-1])
    x = _to_input(train.images, via_size, feature_size, channels)  # (N, C, S, S)
    y = torch.as_tensor(train.labels, dtype=torch.long)
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        _train_classifier(net, x, y, device)
    x_test = _to_input(test.images, via_size, feature_size, channels)
    predicted = _batched(net, x_test, device).argmax(1)  # (N_test,)
    accuracy = float((predicted == torch.as_tensor(test.labels)).double().mean())
    info = {"version": FEATURES_VERSION, "data": train.name, "via_size": via_size,
            "feature_size": feature_size, "channels": channels,
            "num_classes": int(net.head.out_features), "train_images": len(train),
            "test_images": len(test), "test_accuracy": accuracy, "steps": CLASSIFIER_STEPS,
            "train_seconds": round(time.perf_counter() - start, 2),
            "class_names": train.class_names}
    net.cpu()
    with atomic_directory(directory) as tmp:
        save_model(net, str(tmp / "classifier.safetensors"))
        (tmp / "classifier.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return info


def split_train(train: ImageData) -> tuple[ImageData, ImageData]:
    """The train split in two fixed halves: the classifier learns from the first; the real
    row draws from the second. A classifier's features of its own training images are
    tighter than of images it never saw, so a floor drawn from them would be unfairly high
    (a good model would beat real data); both the floor and the reference (the test
    split) must be unseen by the classifier, like the samples."""
    import numpy as np

    order = np.random.default_rng(0).permutation(len(train))
    half = len(train) // 2
    return _subset(train, np.sort(order[:half])), _subset(train, np.sort(order[half:]))


def _subset(data: ImageData, index: np.ndarray) -> ImageData:
    """``data`` restricted to the rows ``index`` (same name and classes)."""
    import dataclasses

    labels = None if data.labels is None else data.labels[index]
    return dataclasses.replace(data, images=data.images[index], labels=labels)


def _num_classes(data: ImageData) -> int:
    if data.labels is None:
        raise DataError(f"data {data.name!r} has no labels, so genkit cannot train its feature "
                        "classifier; pass --features PATH (a local image model directory)")
    return max(int(data.num_classes), int(data.labels.max()) + 1)


def pretrained_extractor(path: str | Path, device: torch.device) -> tuple[Extractor, dict[str, Any]]:
    """Features from a local transformers image model directory (``AutoModel`` +
    ``AutoImageProcessor``, offline, safetensors only): its pooled output, else the mean
    of its last hidden state."""
    import numpy as np
    import torch
    from transformers import AutoImageProcessor, AutoModel

    path = Path(path).expanduser()
    if not path.is_dir():
        raise DataError(f"--features {path}: not a directory; give a local transformers "
                        "image model directory (config.json + model.safetensors)")
    try:
        model = AutoModel.from_pretrained(path, local_files_only=True, use_safetensors=True)
        processor = AutoImageProcessor.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"--features {path}: cannot open it as a transformers image model with "
                        f"its image processor ({first})") from None
    model.to(device).eval()
    channels = int(getattr(model.config, "num_channels", 3))

    def extract(x: torch.Tensor) -> np.ndarray:  # (N, C, S, S) in [-1, 1]
        u8 = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        u8 = u8.expand(-1, channels, -1, -1) if u8.shape[1] != channels else u8
        pixels = u8.permute(0, 2, 3, 1).numpy()  # (N, S, S, C)
        chunks = []
        for i in range(0, len(pixels), 64):
            inputs = processor(images=list(pixels[i:i + 64]), return_tensors="pt")
            with torch.inference_mode():
                out = model(pixel_values=inputs["pixel_values"].to(device))
            chunks.append(_pooled(out).float().cpu().numpy())
        return np.concatenate(chunks)

    info = {"kind": "pretrained", "path": str(path), "model_type": model.config.model_type}
    return extract, info


def _pooled(out: Any) -> torch.Tensor:
    """A model output as one vector per image: (N, D)."""
    pooled = getattr(out, "pooler_output", None)
    if pooled is not None:
        return pooled.flatten(1)
    hidden = out.last_hidden_state
    return hidden.mean(1) if hidden.dim() == 3 else hidden.mean((2, 3))


# ------------------------------------------------------------------------ evaluation
def evaluate(path_or_generator: str | Path | Generator, data: Any = None, n: int = 500,
             seed: int = 0, batch_size: int | None = None, device: Any = "auto",
             features: str | Path | None = None, draws: int = DEFAULT_DRAWS,
             record: bool = True, **sample_options: Any) -> dict[str, Any]:
    """Sample-quality figures of a generator against held-out data (JSON-ready).

    Args:
        path_or_generator: a checkpoint or run directory, or a generator object.
        data: the data source (default: the one the checkpoint was trained on).
        n: images to generate (image models); FD depends on n, so compare at equal n.
        seed: base seed of the samples (and of the real and noise draws).
        batch_size: generation batch size.
        device: where the generator (when loaded here) and feature networks run.
        features: a local transformers image model directory for the image features.
        draws: draws of n averaged for the real and noise rows.
        record: write the figures into the checkpoint's ``genkit.json`` and model card
            (only when ``path_or_generator`` is a checkpoint directory).
        **sample_options: the generator's sampling options (``steps=50``, ...).

    Returns:
        A dict: ``modality``, ``generator``, ``data``, ``rows`` (figures per row: real,
        model, baseline), and image-only ``features``, ``reference``, ``coverage``.
    """
    from genkit.devices import resolve_device

    if n < MIN_SAMPLES:
        raise ConfigError(f"-n {n} is too few for a Fréchet distance; use at least "
                          f"{MIN_SAMPLES} (500 or more for figures worth comparing)")
    if draws < 1:
        raise ConfigError(f"draws must be at least 1, got {draws}")
    start = time.perf_counter()
    generator, directory = _resolve_generator(path_or_generator, device)
    spec = _data_spec(generator, data)
    torch_device = generator.device if directory is None else resolve_device(device)
    if generator.modality == "text":
        if features is not None:
            raise ConfigError("--features is for image models; drop it to evaluate text")
        result = _evaluate_text(generator, spec)
    else:
        result = _evaluate_images(generator, spec, n, seed, batch_size, torch_device,
                                  features, draws, sample_options)
    result = {"generator": generator.name, "checkpoint": str(directory) if directory else None,
              **result, "seconds": round(time.perf_counter() - start, 2),
              "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    if record and directory is not None:
        result["recorded"] = _record(directory, result)
    return result


def _resolve_generator(source: Any, device: Any) -> tuple[Generator, Path | None]:
    """The generator, and its checkpoint directory when ``source`` is a path."""
    from genkit.checkpoint import load_checkpoint, resolve_checkpoint_dir
    from genkit.generator import Generator

    if isinstance(source, Generator):
        return source, None
    if not isinstance(source, (str, Path)):
        raise CheckpointError("evaluate() takes a checkpoint directory or a generator")
    directory = resolve_checkpoint_dir(source)
    return load_checkpoint(directory, device=device), directory


def _data_spec(generator: Generator, data: Any) -> Any:
    """The data to evaluate against: given, else what training used, else the default."""
    if data is not None:
        return data
    trained_on = (generator.training_summary or {}).get("data")
    spec = trained_on or generator.default_data
    if not spec:
        raise DataError(f"no data source known for {generator.name!r}; pass --data SOURCE")
    return spec


def _load_splits(spec: Any, modality: str) -> tuple[Any, Any]:
    from genkit.data import load_data

    train, test = load_data(spec, "train"), load_data(spec, "test")
    if train.modality != modality:
        raise DataError(f"data {train.name!r} holds {train.modality} data but the generator "
                        f"makes {modality}; pass a matching --data")
    return train, test


# ----------------------------------------------------------------------------- images
def _evaluate_images(generator: Generator, spec: Any, n: int, seed: int, batch_size: int | None,
                     device: torch.device, features: str | Path | None, draws: int,
                     options: dict[str, Any]) -> dict[str, Any]:
    """Draw n samples and score them, the train split and noise against the test split."""
    train, test = _load_splits(spec, "image")
    channels = int(train.images.shape[-1])
    samples, conditioning, asked = _draw_samples(generator, train, n, seed, batch_size, options)
    fake = _pil_to_uint8(samples)  # (n, H, W, C)
    via = int(fake.shape[1])
    feature_size = min(via, MAX_FEATURE_SIZE)

    def as_input(images: np.ndarray) -> torch.Tensor:
        return _to_input(images, via, feature_size, channels)

    fit, held = split_train(train)
    classifier, info = (feature_classifier(fit, test, via, channels, device, _num_classes(train))
                        if train.labels is not None or features is None else (None, None))
    extract, feature_info = (pretrained_extractor(features, device) if features is not None
                             else _classifier_extractor(classifier, info, device))
    reference = extract(as_input(test.images))  # (R, D)
    rows = {"real": _score_draws(lambda d: _real_draw(held, n, seed, d), as_input, extract,
                                 reference, draws, seed),
            "model": _score_draws(lambda d: fake, as_input, extract, reference, 1, seed),
            "noise": _score_draws(lambda d: _noise_draw(n, via, channels, seed, d), as_input,
                                  extract, reference, draws, seed)}
    result: dict[str, Any] = {
        "modality": "image", "data": train.name, "n": n, "seed": seed, "draws": draws,
        "image_size": via, "conditioning": conditioning, "features": feature_info,
        "reference": {"split": "test", "size": len(test), "sampling": "whole split, fixed"},
        "real_sampling": (f"the half of the train split the classifier did not see "
                          f"({len(held)} images), "
                          + ("without replacement" if n <= len(held) else "with replacement")),
        "rows": rows,
    }
    if classifier is not None:
        sets = {"real": _real_draw(held, n, seed, 0), "model": fake,
                "noise": _noise_draw(n, via, channels, seed, 0)}
        result["coverage"] = _coverage_rows(classifier, train.class_names, _num_classes(train),
                                            sets, asked, as_input, device)
    return result


def _classifier_extractor(classifier: Any, info: dict[str, Any],
                          device: torch.device) -> tuple[Extractor, dict[str, Any]]:
    """The small classifier's pooled features, and what to report about it."""
    def extract(x: torch.Tensor) -> np.ndarray:
        return _batched(classifier.features, x, device).numpy()  # (N, D)

    keep = ("path", "cached", "test_accuracy", "feature_size", "num_classes", "train_seconds")
    return extract, {"kind": "classifier", **{k: info[k] for k in keep if k in info}}


def _draw_samples(generator: Generator, train: ImageData, n: int, seed: int,
                  batch_size: int | None,
                  options: dict[str, Any]) -> tuple[list[Any], str, list[int] | None]:
    """n samples; a label-conditional model is asked for the classes in turn (0, 1, ...)."""
    num_classes = getattr(generator.config, "num_classes", 0) or 0
    if "label" in generator.accepted_conditions() and num_classes > 0 and train.labels is not None:
        samples = generator.sample(n, seed=seed, batch_size=batch_size,
                                   labels=list(range(num_classes)), **options)
        asked = [i % num_classes for i in range(n)]
        return samples, f"labels 0..{num_classes - 1} in turn", asked
    return generator.sample(n, seed=seed, batch_size=batch_size, **options), "none", None


def _pil_to_uint8(images: Sequence[Any]) -> np.ndarray:
    """PIL images -> uint8 ``(N, H, W, C)``."""
    import numpy as np

    if not images or not hasattr(images[0], "size"):
        raise DataError("the generator returned no images to evaluate")
    arrays = [np.asarray(im.convert("L" if im.mode in ("L", "1", "I", "I;16") else "RGB"))
              for im in images]
    stacked = np.stack(arrays)
    return stacked[..., None] if stacked.ndim == 3 else stacked


def _real_draw(train: ImageData, n: int, seed: int, draw: int) -> np.ndarray:
    import numpy as np

    rng = np.random.default_rng([seed, draw, 1])
    index = rng.choice(len(train), size=n, replace=n > len(train))
    return train.images[index]


def _noise_draw(n: int, size: int, channels: int, seed: int, draw: int) -> np.ndarray:
    import numpy as np

    rng = np.random.default_rng([seed, draw, 2])
    return rng.integers(0, 256, size=(n, size, size, channels), dtype=np.uint8)


def _score_draws(make: Callable[[int], np.ndarray], as_input: Callable[[np.ndarray], Any],
                 extract: Extractor, reference: np.ndarray, draws: int,
                 seed: int) -> dict[str, Any]:
    """FD, precision and recall of ``draws`` image sets against ``reference``: mean (and
    the FD's standard deviation across draws)."""
    import numpy as np

    fds, knn = [], []
    for d in range(draws):
        feats = extract(as_input(make(d)))  # (n, D)
        fds.append(frechet_distance(feats, reference))
        m = min(len(feats), len(reference))
        pick = np.random.default_rng([seed, d, 3]).choice(len(feats), size=m, replace=False)
        knn.append(knn_metrics(reference, feats[pick]))
    return {"fd": float(np.mean(fds)), "fd_std": float(np.std(fds)) if draws > 1 else None,
            **{k: float(np.mean([m[k] for m in knn])) for k in knn[0]}, "draws": draws}


def _coverage_rows(classifier: torch.nn.Module, class_names: list[str] | None, num_classes: int,
                   sets: dict[str, np.ndarray], asked: list[int] | None,
                   as_input: Callable[[np.ndarray], Any], device: torch.device) -> dict[str, Any]:
    """Class coverage of each image set (the model's samples, a real draw, a noise draw);
    with labels asked of the model, the share classified as the label asked for."""
    import numpy as np

    rows = {}
    for key, images in sets.items():
        predicted = _batched(classifier, as_input(images), device).argmax(1).numpy()  # (N,)
        rows[key] = class_coverage(predicted, num_classes, class_names)
        if key == "model" and asked is not None:
            rows[key]["label_accuracy"] = float(np.mean(predicted == np.asarray(asked)))
    return rows


# ------------------------------------------------------------------------------- text
def _evaluate_text(generator: Generator, spec: Any) -> dict[str, Any]:
    """The model's held-out loss, perplexity and bits/char beside a unigram model."""
    train, test = _load_splits(spec, "text")
    figures = generator.evaluate(test)
    if not figures or "val_bpc" not in figures:
        raise DataError(f"generator {generator.name!r} reports no held-out bits per character "
                        "(its evaluate() returns none); it cannot be scored on text")
    unigram = unigram_bits_per_char(train.text, test.text)
    model = {k: float(v) for k, v in figures.items()}
    return {
        "modality": "text", "data": train.name,
        "reference": {"split": "test", "size": len(test), "unit": "characters"},
        "rows": {"model": model, "unigram": {"val_bpc": unigram, "char_ppl": 2.0 ** unigram}},
        "beats_baseline": model["val_bpc"] < unigram,
    }


# --------------------------------------------------------------------------- recording
def summary(result: dict[str, Any]) -> dict[str, Any]:
    """The flat figures recorded in ``genkit.json`` under ``"evaluation"`` (what the model
    card and ``genkit info`` list), with the per-row details nested under ``details``."""
    rows = result["rows"]
    flat: dict[str, Any] = {"data": result["data"], "date": result["date"]}
    if result["modality"] == "text":
        flat.update({k: rows["model"][k] for k in ("val_loss", "val_ppl", "val_bpc")
                     if k in rows["model"]})
        flat["unigram_bpc"] = rows["unigram"]["val_bpc"]
    else:
        flat.update({"n": result["n"], "features": result["features"]["kind"],
                     "fd": rows["model"]["fd"], "fd_real": rows["real"]["fd"],
                     "fd_noise": rows["noise"]["fd"], "precision": rows["model"]["precision"],
                     "recall": rows["model"]["recall"], "density": rows["model"]["density"]})
        coverage = (result.get("coverage") or {}).get("model")
        if coverage:
            flat["classes_present"] = coverage["classes_present"]
            flat["collapsed"] = coverage["collapsed"]
    flat["details"] = {k: result[k] for k in ("rows", "coverage", "features", "reference")
                       if k in result}
    return flat


def _record(directory: Path, result: dict[str, Any]) -> str | None:
    """Write the figures into ``genkit.json`` and the model card, atomically. Returns the
    path written, or None when the directory cannot be written (an installed package)."""
    from genkit.checkpoint import MANIFEST, atomic_write_text, read_manifest
    from genkit.modelcard import write_model_card

    manifest = read_manifest(directory)
    manifest["evaluation"] = summary(result)
    try:
        atomic_write_text(directory / MANIFEST, json.dumps(manifest, indent=2) + "\n")
        write_model_card(directory, manifest)
    except OSError:
        return None
    return str(directory / MANIFEST)


# ----------------------------------------------------------------------------- report
def _num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e5 else f"{value:.3e}"
    return str(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return lines


def format_report(result: dict[str, Any]) -> str:
    """A readable table of :func:`evaluate`'s result: the model between floor and baseline."""
    if result["modality"] == "text":
        return _format_text(result)
    return _format_images(result)


def _format_images(result: dict[str, Any]) -> str:
    feats = result["features"]
    if feats["kind"] == "classifier":
        described = (f"small CNN classifier trained on half the {result['data']} train split "
                     f"(test accuracy {feats.get('test_accuracy', 0):.1%}; {feats.get('path')})")
    else:
        described = f"{feats.get('model_type')} model at {feats.get('path')} (pooled output)"
    lines = [f"{result['generator']} on {result['data']}: n={result['n']}, seed {result['seed']}, "
             f"{result['image_size']}x{result['image_size']} images, conditioning: "
             f"{result['conditioning']}",
             f"features:  {described}",
             f"reference: the whole {result['data']} test split ({result['reference']['size']} "
             "images, fixed)", ""]
    coverage = result.get("coverage") or {}
    names = {"real": f"real (held-out train half, {result['draws']} draws)", "model": "model",
             "noise": f"noise (uniform, {result['draws']} draws)"}
    header = ["", "FD (lower better)", "precision", "recall", "density"]
    if coverage:
        header += ["classes", "top class"]
    rows = []
    for key in ("real", "model", "noise"):
        row = result["rows"][key]
        fd = _num(row["fd"]) + (f" ± {_num(row['fd_std'], 2)}" if row.get("fd_std") else "")
        cells = [names[key], fd, f"{row['precision']:.3f}", f"{row['recall']:.3f}",
                 f"{row['density']:.3f}"]
        cov = coverage.get(key)
        if coverage:
            cells += ([f"{cov['classes_present']}/{cov['num_classes']}",
                       f"{cov['top_class']} ({cov['top_share']:.0%})"] if cov else ["", ""])
        rows.append(cells)
    lines += _table(header, rows)
    lines.append("")
    lines.append("real: n images of the half of the train split the classifier never saw "
                 "(the floor); noise: the baseline. FD depends on n: compare at equal n only.")
    lines.append("precision and density judge samples one at a time: junk the features map "
                 "into the data's region (see noise) passes them; read them with recall and FD.")
    model_cov = coverage.get("model")
    if model_cov:
        if "label_accuracy" in model_cov:
            lines.append(f"label agreement: {model_cov['label_accuracy']:.1%} of samples are "
                         "classified as the label asked for")
        if model_cov["collapsed"]:
            lines.append(f"WARNING: coverage collapsed: {model_cov['classes_present']} of "
                         f"{model_cov['num_classes']} classes appear, class "
                         f"{model_cov['top_class']} takes {model_cov['top_share']:.0%} "
                         "(mode collapse?)")
    return "\n".join(lines + _recorded_line(result))


def _format_text(result: dict[str, Any]) -> str:
    model, unigram = result["rows"]["model"], result["rows"]["unigram"]
    lines = [f"{result['generator']} on {result['data']}: held-out test split "
             f"({result['reference']['size']} characters)", ""]
    rows = [["model", _num(model.get("val_loss")), _num(model.get("val_ppl")),
             f"{model['val_bpc']:.4f}"],
            ["unigram (chars of the train split)", "-", f"{unigram['char_ppl']:.4g} per char",
             f"{unigram['val_bpc']:.4f}"]]
    lines += _table(["", "loss (nats/token)", "perplexity", "bits/char (lower better)"], rows)
    verdict = "beats" if result["beats_baseline"] else "does NOT beat"
    lines += ["", f"the model {verdict} the unigram baseline "
              f"({model['val_bpc']:.3f} vs {unigram['val_bpc']:.3f} bits/char)"]
    return "\n".join(lines + _recorded_line(result))


def _recorded_line(result: dict[str, Any]) -> list[str]:
    if result.get("checkpoint") is None:
        return []
    if result.get("recorded"):
        return [f"recorded in {result['recorded']} and its README.md"]
    if "recorded" in result:
        return [f"not recorded: {result['checkpoint']} is not writable"]
    return []
