"""Image features for evaluation: a small classifier trained once per data set and
cached, or a local pretrained transformers image model.

The classifier is trained on one half of the data source's train split, on the images
brought to the generator's size exactly as its training saw them, and cached in
``<cache>/features/<key>/`` (``$GENKIT_CACHE``, else ``$XDG_CACHE_HOME/genkit``, else
``~/.cache/genkit``) as ``classifier.safetensors`` + ``classifier.json`` (with its test
accuracy). Its pooled features give the Fréchet distance; its classes give coverage.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genkit.data.types import ImageData
from genkit.errors import DataError
from genkit.fs import atomic_directory
from genkit.imaging import uint8_to_tensor
from genkit.paths import cache_dir

FEATURES_VERSION = 2  # bump when the classifier or its training changes: new cache key
MAX_FEATURE_SIZE = 64  # larger images are averaged down to this side for the classifier
CLASSIFIER_STEPS = 500
CLASSIFIER_BATCH = 64
FEATURE_BATCH = 256

Extractor = Callable[[torch.Tensor], np.ndarray]  # (N, C, S, S) in [-1, 1] -> (N, D)



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


def to_input(images: np.ndarray, via_size: int, feature_size: int, channels: int) -> torch.Tensor:
    """uint8 ``(N, H, W, C)`` -> float ``(N, channels, S, S)`` in [-1, 1]: resized to
    ``via_size`` as a generator's training sees data, then averaged down to the
    classifier's side ``feature_size`` when that is smaller."""
    import torch.nn.functional as F

    x = uint8_to_tensor(images, via_size, channels)  # (N, C, via, via)
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


def batched(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, device: torch.device,
             batch: int = FEATURE_BATCH) -> torch.Tensor:
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
    num_classes = num_classes or num_classes_of(train)
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
    from safetensors.torch import save_model

    channels = int(train.images.shape[-1])
    x = to_input(train.images, via_size, feature_size, channels)  # (N, C, S, S)
    y = torch.as_tensor(train.labels, dtype=torch.long)
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        _train_classifier(net, x, y, device)
    x_test = to_input(test.images, via_size, feature_size, channels)
    predicted = batched(net, x_test, device).argmax(1)  # (N_test,)
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
    order = np.random.default_rng(0).permutation(len(train))
    half = len(train) // 2
    return _subset(train, np.sort(order[:half])), _subset(train, np.sort(order[half:]))


def _subset(data: ImageData, index: np.ndarray) -> ImageData:
    """``data`` restricted to the rows ``index`` (same name and classes)."""
    labels = None if data.labels is None else data.labels[index]
    return dataclasses.replace(data, images=data.images[index], labels=labels)


def num_classes_of(data: ImageData) -> int:
    if data.labels is None:
        raise DataError(f"data {data.name!r} has no labels, so genkit cannot train its feature "
                        "classifier; pass --features PATH (a local image model directory)")
    return max(int(data.num_classes), int(data.labels.max()) + 1)


def pretrained_extractor(path: str | Path, device: torch.device) -> tuple[Extractor, dict[str, Any]]:
    """Features from a local transformers image model directory (``AutoModel`` +
    ``AutoImageProcessor``, offline, safetensors only): its pooled output, else the mean
    of its last hidden state."""
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




def classifier_extractor(classifier: Any, info: dict[str, Any],
                         device: torch.device) -> tuple[Extractor, dict[str, Any]]:
    """The small classifier's pooled features, and what to report about it."""
    def extract(x: torch.Tensor) -> np.ndarray:
        return batched(classifier.features, x, device).numpy()  # (N, D)

    keep = ("path", "cached", "test_accuracy", "feature_size", "num_classes", "train_seconds")
    return extract, {"kind": "classifier", **{k: info[k] for k in keep if k in info}}
