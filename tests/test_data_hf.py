"""``hf:`` through ``datasets.load_dataset``: splits and class names kept, imagefolder,
Hub ids from a local Hugging Face cache (offline), streaming, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

import genkit
from genkit.data.datasets import image_dataset
from genkit.data.lazy import LazyImageData, materialise
from genkit.data.stream import StreamingImageData
from genkit.errors import ConfigError, DataError
from genkit.train.loader import make_loader

datasets = pytest.importorskip("datasets")


@pytest.fixture(autouse=True)
def private_datasets_cache(tmp_path, monkeypatch):
    """``datasets`` prepares Arrow copies of local files in its cache: keep them here."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets-cache")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "datasets-cache"))


def images(n: int, seed: int = 0, mode: str = "RGB") -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    shape = (8, 8, 3) if mode == "RGB" else (8, 8)
    return [Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode=mode)
            for _ in range(n)]


def split_set(n_train: int = 12, n_test: int = 4) -> object:
    """A DatasetDict with train/test splits, an Image column and ClassLabel names."""
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(
        names=["ant", "bee", "cow"]), "text": datasets.Value("string")})

    def part(n, seed):
        return datasets.Dataset.from_dict(
            {"image": images(n, seed), "label": [i % 3 for i in range(n)],
             "text": [f"row {i}" for i in range(n)]}, features=features)

    return datasets.DatasetDict({"train": part(n_train, 0), "test": part(n_test, 1)})


def test_save_to_disk_keeps_splits_and_class_names(tmp_path):
    split_set().save_to_disk(str(tmp_path / "ds"))
    train = genkit.load_data(f"hf:{tmp_path / 'ds'}", split="train")
    test = genkit.load_data(f"hf:{tmp_path / 'ds'}", split="test")
    assert isinstance(train, LazyImageData) and train.lazy
    assert (len(train), len(test)) == (12, 4)  # not re-split
    assert train.class_names == ["ant", "bee", "cow"] and train.num_classes == 3
    assert train.captions[:2] == ["row 0", "row 1"]
    batch = image_dataset(train, 16, 1, 3, "test").__getitems__([0, 4])
    assert batch["image"].shape == (2, 1, 16, 16) and batch["label"].tolist() == [0, 1]
    assert len(genkit.load_data(f"hf:{tmp_path / 'ds'}", split="all")) == 16
    chosen = genkit.load_data(f"hf:{tmp_path / 'ds'}", options={"split": "test"})
    assert len(chosen) == 3  # training on "test": nothing else is held out, so 80% of it


def test_set_without_a_test_split_is_divided_with_a_fixed_seed(tmp_path):
    split_set()["train"].to_parquet(str(tmp_path / "one.parquet"))
    train = genkit.load_data(f"hf:{tmp_path / 'one.parquet'}", split="train")
    test = genkit.load_data(f"hf:{tmp_path / 'one.parquet'}", split="test")
    assert (len(train), len(test)) == (10, 2)
    again = genkit.load_data(f"hf:{tmp_path / 'one.parquet'}", split="test")
    assert np.array_equal(materialise(test).images, materialise(again).images)


def test_imagefolder_with_metadata_and_class_folders(tmp_path):
    root = tmp_path / "imf"
    for label in ("cat", "dog"):
        (root / label).mkdir(parents=True)
        for i, im in enumerate(images(5, seed=len(label))):
            im.save(root / label / f"{i}.png")
    data = genkit.load_data(f"hf:{root}", split="all")
    assert data.class_names == ["cat", "dog"] and len(data) == 10
    cap = tmp_path / "cap"
    (cap / "images").mkdir(parents=True)
    with open(cap / "metadata.jsonl", "w") as fh:
        for i, im in enumerate(images(6)):
            im.save(cap / "images" / f"{i}.png")
            fh.write(json.dumps({"file_name": f"images/{i}.png", "text": f"pic {i}"}) + "\n")
    data = genkit.load_data(f"hf:{cap}", split="all")
    assert sorted(data.captions) == sorted(f"pic {i}" for i in range(6)) and data.labels is None


def hub_cache(tmp_path: Path, repo: str = "someone/tiny-shapes") -> Path:
    """A dataset repo as huggingface_hub lays it out in its cache:
    ``datasets--ORG--NAME/refs/main`` naming a revision whose files are under
    ``snapshots/<revision>/``."""
    revision = "0123456789abcdef0123456789abcdef01234567"
    folder = tmp_path / "hub" / f"datasets--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(revision)
    snapshot = folder / "snapshots" / revision / "data"
    snapshot.mkdir(parents=True)
    for name, part in split_set().items():
        part.to_parquet(str(snapshot / f"{name}-00000-of-00001.parquet"))
    return tmp_path / "hub"


def test_hub_id_resolves_from_the_local_cache_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(hub_cache(tmp_path)))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    train = genkit.load_data("hf:someone/tiny-shapes", split="train")
    test = genkit.load_data("hf:someone/tiny-shapes", split="test")
    assert (len(train), len(test)) == (12, 4) and train.class_names == ["ant", "bee", "cow"]
    with pytest.raises(DataError, match="someone/missing is neither a local path nor a data "
                                        "set in the Hugging Face cache") as info:
        genkit.load_data("hf:someone/missing")
    assert "\n" not in str(info.value)


def test_streaming_keeps_the_position_a_function_of_the_step(tmp_path):
    split_set(n_train=40).save_to_disk(str(tmp_path / "ds"))
    data = genkit.load_data(f"hf:{tmp_path / 'ds'}", streaming="true")
    assert isinstance(data, StreamingImageData) and data.class_names == ["ant", "bee", "cow"]
    ds = image_dataset(data, 8, 3, 3, "test")
    args = SimpleNamespace(batch_size=8, seed=3, num_workers=None, augment=True)

    def run(start, n):
        batches = iter(make_loader(ds, args, 0, 1, start, False))
        return [next(batches) for _ in range(n)]

    whole = run(0, 12)  # 5 batches an epoch: crosses two epoch boundaries
    resumed = run(7, 5)
    for a, b in zip(whole[7:], resumed):
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
    assert not torch.equal(whole[0]["image"], whole[5]["image"])  # epochs differ in order
    assert materialise(data, max_n=3).images.shape == (3, 8, 8, 3)


@pytest.mark.parametrize("options, message", [
    ({"image_column": "picture"}, "column 'picture' not in dataset; columns: image, label, text"),
    ({"label_column": "kind"}, "(choose with --set label_column=NAME)"),
    ({"split": "dev"}, "unknown split 'dev'.*it has train, test"),
])
def test_bad_columns_and_splits_are_one_line(tmp_path, options, message):
    split_set().save_to_disk(str(tmp_path / "ds"))
    with pytest.raises(DataError, match=message):
        genkit.load_data(f"hf:{tmp_path / 'ds'}", options=options)


def test_bad_hf_sources_are_one_line(tmp_path):
    (tmp_path / "thing").mkdir()
    (tmp_path / "thing" / "config.json").write_text('{"model_type": "gpt2"}')
    (tmp_path / "bad.parquet").write_bytes(b"PAR1" + bytes(range(200)) + b"PAR1")
    empty = datasets.Dataset.from_dict({"image": [], "label": []})
    empty.save_to_disk(str(tmp_path / "empty"))
    empty.to_parquet(str(tmp_path / "empty.parquet"))
    for spec, message in ((f"hf:{tmp_path / 'bad.parquet'}", "is not a data set genkit can read"),
                          (f"hf:{tmp_path / 'empty'}", "is empty"),
                          (f"hf:{tmp_path / 'empty.parquet'}", "is empty"),
                          (f"hf:{tmp_path / 'nope.parquet'}", "does not exist"),
                          (f"hf:{tmp_path / 'notes.txt'}", "does not exist")):
        with pytest.raises(DataError, match=message) as info:
            genkit.load_data(spec, split="all")
        assert "\n" not in str(info.value)
    with pytest.raises((DataError, ConfigError)) as info:  # a folder of JSON: no images
        image_dataset(genkit.load_data(f"hf:{tmp_path / 'thing'}", split="all"), 8, 3, 0, "vae")
    assert "\n" not in str(info.value)
