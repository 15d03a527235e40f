"""Lazy image folders: listed at start, decoded per batch (in workers), the decoded cache,
imagefolder captions and labels, grey/RGB conversion, materialising for evaluation."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

import genkit
from genkit.data.datasets import LazyImageDataset, TensorDictDataset, image_dataset
from genkit.data.lazy import LazyImageData, materialise
from genkit.errors import ConfigError, DataError
from genkit.train.loader import make_loader

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def write_images(folder: Path, n: int, size=(12, 10), mode="RGB", seed=0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
        path = folder / f"{i:03d}.png"
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode=mode).save(path)
        paths.append(path)
    return paths


@pytest.fixture
def classes(tmp_path) -> Path:
    root = tmp_path / "classes"
    write_images(root / "cat", 6, seed=1)
    write_images(root / "dog", 4, mode="L", seed=2)  # grey beside RGB: converted, no error
    return root


@pytest.fixture
def count_opens(monkeypatch):
    calls = []
    original = Image.open

    def counting(*args, **kwargs):
        calls.append(args[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(Image, "open", counting)
    return calls


def test_folder_lists_without_decoding(classes, count_opens):
    data = genkit.load_data(f"folder:{classes}", split="all")
    assert isinstance(data, LazyImageData) and data.lazy and len(data) == 10
    assert data.class_names == ["cat", "dog"] and data.labels.tolist() == [0] * 6 + [1] * 4
    ds = image_dataset(data, 16, 3, 2, "test")
    assert isinstance(ds, LazyImageDataset) and len(ds) == 10
    assert count_opens == []  # listing, splitting, len() and the dataset decode nothing
    batch = ds.__getitems__([0, 7])
    assert len(count_opens) == 2
    assert batch["image"].shape == (2, 3, 16, 16) and batch["label"].tolist() == [0, 1]
    assert -1 <= batch["image"].min() and batch["image"].max() <= 1


def test_grey_and_rgb_convert_to_the_model(classes):
    data = genkit.load_data(f"folder:{classes}", split="all")
    grey = image_dataset(data, 8, 1, 0, "test").__getitems__(list(range(10)))["image"]
    rgb = image_dataset(data, 8, 3, 0, "test").__getitems__(list(range(10)))["image"]
    assert grey.shape == (10, 1, 8, 8) and rgb.shape == (10, 3, 8, 8)
    assert torch.equal(rgb[7, 0], rgb[7, 1])  # a grey file repeated into RGB


def test_lazy_matches_in_memory_pixels(classes):
    """The lazy path and the in-memory path give the same tensors at the native size."""
    data = genkit.load_data(f"folder:{classes}", split="all", size=12)
    lazy = image_dataset(data, 12, 3, 0, "test").__getitems__(list(range(10)))["image"]
    memory = image_dataset(materialise(data, channels=3), 12, 3, 0, "test")
    assert isinstance(memory, TensorDictDataset)
    assert torch.equal(lazy, memory.tensors["image"])


def test_splits_are_fixed_disjoint_and_lazy(classes):
    train = genkit.load_data(f"folder:{classes}", split="train")
    test = genkit.load_data(f"folder:{classes}", split="test")
    again = genkit.load_data(f"folder:{classes}", split="test")
    assert len(train) + len(test) == 10 and train.lazy and test.lazy
    def names(data):
        return [data.reader.relpath(i) for i in range(len(data))]

    assert not set(names(train)) & set(names(test))
    assert names(test) == names(again)


def test_images_property_and_materialise(classes):
    data = genkit.load_data(f"folder:{classes}", split="all")
    assert data.images.shape == (10, 10, 12, 3)  # the first image's size and mode
    assert not data.lazy and len(data) == 10
    small = materialise(genkit.load_data(f"folder:{classes}", split="all"), max_n=4, size=8)
    assert small.images.shape == (4, 8, 8, 3) and len(small.labels) == 4
    assert type(small) is genkit.plugin.ImageData


def test_lazy_dataset_pickles_small_and_works_in_workers(tmp_path):
    write_images(tmp_path / "many", 64)
    data = genkit.load_data(f"folder:{tmp_path / 'many'}", split="all")
    ds = image_dataset(data, 8, 3, 0, "test")
    blob = pickle.dumps(ds)
    assert len(blob) < 10_000  # paths as one array: workers start fast
    assert torch.equal(pickle.loads(blob).__getitems__([5])["image"], ds.__getitems__([5])["image"])
    args = SimpleNamespace(batch_size=16, seed=0, num_workers=2, augment=False)
    batches = iter(make_loader(ds, args, rank=0, world=1, start_batch=0, pin=False))
    epoch = torch.cat([next(batches)["image"] for _ in range(4)])
    assert epoch.shape == (64, 3, 8, 8)
    assert len({row.numpy().tobytes() for row in epoch}) == 64  # each image once an epoch


def test_metadata_jsonl_gives_captions_and_labels(tmp_path):
    root = tmp_path / "emoji"
    write_images(root / "images", 6)
    rows = [{"file_name": f"images/{i:03d}.png", "text": f"caption {i}", "group": "ab"[i % 2]}
            for i in range(6)]
    (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = genkit.load_data(f"folder:{root}", split="all")
    assert data.captions == [f"caption {i}" for i in range(6)] and data.labels is None
    labelled = genkit.load_data(f"folder:{root}", split="all", label_column="group")
    assert labelled.class_names == ["a", "b"] and labelled.labels.tolist() == [0, 1] * 3
    with pytest.raises(DataError, match="column 'nope' not in metadata.jsonl"):
        genkit.load_data(f"folder:{root}", label_column="nope")
    (root / "metadata.jsonl").write_text(json.dumps({"file_name": "../outside.png"}) + "\n")
    with pytest.raises(DataError, match="not a path inside"):
        genkit.load_data(f"folder:{root}")


def test_metadata_csv(tmp_path):
    root = tmp_path / "csv"
    write_images(root, 4)
    (root / "metadata.csv").write_text("file_name,text\n" + "".join(
        f"{i:03d}.png,picture {i}\n" for i in range(4)))
    data = genkit.load_data(f"folder:{root}", split="all")
    assert data.captions == [f"picture {i}" for i in range(4)]


def test_decoded_cache_fills_and_is_reused(tmp_path, monkeypatch, count_opens):
    monkeypatch.setenv("GENKIT_CACHE", str(tmp_path / "cache"))
    write_images(tmp_path / "imgs", 8)
    data = genkit.load_data(f"folder:{tmp_path / 'imgs'}", split="all", cache="true")
    first = image_dataset(data, 8, 3, 0, "test").__getitems__(list(range(8)))["image"]
    assert len(count_opens) == 8
    files = list((tmp_path / "cache" / "images").glob("*.npy"))
    assert len(files) == 2  # rows and their CRCs
    again = genkit.load_data(f"folder:{tmp_path / 'imgs'}", split="all", cache=True)
    second = image_dataset(again, 8, 3, 0, "test").__getitems__(list(range(8)))["image"]
    assert len(count_opens) == 8 and torch.equal(first, second)  # read from the cache
    rows = np.load(next(f for f in files if ".crc" not in f.name), mmap_mode="r+")
    rows[3] = 0  # a torn row: its CRC no longer matches, so it is decoded again
    rows.flush()
    third = image_dataset(again, 8, 3, 0, "test").__getitems__(list(range(8)))["image"]
    assert len(count_opens) == 9 and torch.equal(first, third)


def test_data_options_are_typed(classes):
    assert len(genkit.load_data(f"folder:{classes}", size="8", split="all").images[0]) == 8
    for value, message in (("abc", "must be an integer"), ("0", "size must be 1..4096")):
        with pytest.raises(ConfigError, match=message):
            genkit.load_data(f"folder:{classes}", size=value)
    with pytest.raises(ConfigError, match="unknown data option key 'colour'"):
        genkit.load_data(f"folder:{classes}", colour="red")
    with pytest.raises(ConfigError, match="streaming"):
        genkit.load_data(f"folder:{classes}", streaming="maybe")


@pytest.mark.skipif(not (SHARED / "dcss_tiles").is_dir(), reason="../shared/data is absent")
def test_shared_tiles_and_emoji_list_fast():
    tiles = genkit.load_data(f"folder:{SHARED / 'dcss_tiles'}", split="all")
    assert len(tiles) == 5439 and tiles.class_names == ["dngn", "gui", "item", "mon"]
    emoji = genkit.load_data(f"folder:{SHARED / 'noto_emoji'}", split="all")
    assert len(emoji) == 1784 and emoji.captions[0] == "flag: Ascension Island"
    batch = image_dataset(emoji, 32, 3, 0, "test").__getitems__([0, 1])
    assert batch["image"].shape == (2, 3, 32, 32)
