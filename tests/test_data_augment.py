"""Augmentation whose randomness is a function of (seed, global batch, index), and the
data position of step s as a function of s: through the loader and through a resumed run."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import genkit
import genkit.train.loader as loader_module
from genkit.data.augment import augment_image
from genkit.data.datasets import TensorDictDataset, image_dataset, make_train_dataset
from genkit.errors import ConfigError
from genkit.store.checkpoint import step_checkpoints
from genkit.train.loader import make_loader


def folder(tmp_path, n=48):
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (tmp_path / "imgs" / label).mkdir(parents=True)
        for i in range(n // 2):
            Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(
                tmp_path / "imgs" / label / f"{i}.png")
    return tmp_path / "imgs"


def test_same_coordinates_same_pixels_other_step_other_pixels():
    image = torch.rand(3, 16, 16) * 2 - 1
    a, b = augment_image(image, 11), augment_image(image, 11)
    assert torch.equal(a, b) and a.shape == image.shape and a.abs().max() <= 1
    assert not torch.equal(a, augment_image(image, 12))
    ds = make_train_dataset(TensorDictDataset(image=image[None].repeat(4, 1, 1, 1)), True, 0)
    one = ds.__getitems__([(0, 5), (1, 5)])["image"]
    assert torch.equal(one, ds.__getitems__([(0, 5), (1, 5)])["image"])
    assert not torch.equal(one, ds.__getitems__([(0, 6), (1, 6)])["image"])  # another step
    assert not torch.equal(one[0], one[1])  # another index, same source pixels


def test_augment_refuses_non_image_datasets():
    with pytest.raises(ConfigError, match="--augment works on image data"):
        make_train_dataset(TensorDictDataset(tokens=torch.zeros(4, 3)), True, 0)


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_position_is_a_function_of_the_batch_number(tmp_path, workers):
    data = genkit.load_data(f"folder:{folder(tmp_path)}", split="all")
    ds = image_dataset(data, 8, 3, 2, "test")
    args = SimpleNamespace(batch_size=8, seed=1, num_workers=workers, augment=True)

    def batches(start, n):
        it = iter(make_loader(ds, args, 0, 1, start, False))
        return [next(it) for _ in range(n)]

    whole = batches(0, 9)  # 6 batches an epoch
    for a, b in zip(whole[4:], batches(4, 5)):
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
    plain = iter(make_loader(ds, SimpleNamespace(**{**vars(args), "augment": False}), 0, 1, 0,
                             False))
    assert not torch.equal(next(plain)["image"], whole[0]["image"])


def test_resumed_run_on_a_lazy_folder_with_augmentation_is_exact(tmp_path, monkeypatch):
    """Train 6 steps straight, and 3 + resume to 6: identical weights, with augmentation
    on (forced here until TrainArgs has its ``augment`` field) and a loader worker."""
    original = loader_module.make_train_dataset
    monkeypatch.setattr(loader_module, "make_train_dataset",
                        lambda dataset, augment, seed: original(dataset, True, seed))
    source = f"folder:{folder(tmp_path)}"
    common = dict(batch_size=8, device="cpu", log_with="none", progress=False, num_workers=1,
                  checkpoint_every=3)

    def vae():
        return genkit.create("vae", image_size=8, base_width=4, latent_dim=2, num_classes=2)

    vae().train(source, out=tmp_path / "straight", steps=6, **common)
    vae().train(source, out=tmp_path / "resumed", steps=3, **common)
    vae().train(source, out=tmp_path / "resumed", steps=6, resume=True, **common)
    a, b = (load_file(str(step_checkpoints(tmp_path / r)[-1] / "training_state" /
                          "online.safetensors")) for r in ("straight", "resumed"))
    assert a and a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
