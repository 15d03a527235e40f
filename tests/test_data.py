"""Data sources: built-ins, splits, resizing, Hugging Face data sets, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import genkit
from genkit.data.datasets import images_to_tensor
from genkit.errors import ConfigError, DataError


def test_digits_splits_are_fixed_and_disjoint():
    train, test, whole = (genkit.load_data("digits", split=s) for s in ("train", "test", "all"))
    assert len(whole) == 1797 and len(train) + len(test) == 1797
    assert train.images.shape[1:] == (8, 8, 1) and train.images.dtype == np.uint8
    assert train.images.max() == 255 and set(np.unique(train.labels)) == set(range(10))
    assert np.array_equal(test.images, genkit.load_data("digits", split="test").images)
    train_rows = {r.tobytes() + bytes([lab]) for r, lab in zip(train.images, train.labels)}
    assert sum(r.tobytes() + bytes([lab]) in train_rows for r, lab in zip(test.images, test.labels)) < 10


def test_images_are_resized_to_the_model(tmp_path):
    x = images_to_tensor(genkit.load_data("digits"), 16, 3)
    assert x.shape[1:] == (3, 16, 16) and -1 <= x.min() and x.max() <= 1


def test_text_sources_hold_out_the_end(tmp_path):
    text = "".join(f"line {i}\n" for i in range(1000))
    (tmp_path / "t.txt").write_text(text)
    train = genkit.load_data(f"text:{tmp_path / 't.txt'}", split="train").text
    held = genkit.load_data(f"text:{tmp_path / 't.txt'}", split="test").text
    assert train + held == text and len(held) == int(len(text) * 0.1)
    pydoc = genkit.load_data("pydoc", split="all").text
    assert len(pydoc) > 300_000 and "return" in pydoc


def test_folder_source_uses_subfolders_as_labels(tmp_path):
    for label in ("cat", "dog"):
        (tmp_path / label).mkdir()
        for i in range(5):
            Image.new("RGB", (12, 10), (i * 40, 0, 0)).save(tmp_path / label / f"{i}.png")
    data = genkit.load_data(f"folder:{tmp_path}", split="all")
    assert data.images.shape == (10, 10, 12, 3) and data.class_names == ["cat", "dog"]
    assert sorted(data.labels.tolist()) == [0] * 5 + [1] * 5


def test_hf_datasets_source(tmp_path):
    datasets = pytest.importorskip("datasets")
    images = [Image.new("L", (8, 8), i * 20) for i in range(10)]
    ds = datasets.Dataset.from_dict({"pixels": images, "label": [i % 2 for i in range(10)]})
    ds = ds.cast_column("pixels", datasets.Image())
    ds.save_to_disk(str(tmp_path / "imgs"))
    data = genkit.load_data(f"hf:{tmp_path / 'imgs'}", split="all", column="pixels")
    assert data.images.shape[0] == 10 and data.num_classes == 2
    text = datasets.Dataset.from_dict({"text": ["hello world"] * 20})
    text.to_parquet(str(tmp_path / "t.parquet"))
    assert "hello world" in genkit.load_data(f"hf:{tmp_path / 't.parquet'}", split="all").text
    with pytest.raises(DataError, match="column 'nope' not in dataset; columns: pixels, label"):
        genkit.load_data(f"hf:{tmp_path / 'imgs'}", column="nope")


@pytest.mark.parametrize("spec, message", [
    ("moon", "unknown data source 'moon'"),
    ("folder:/does/not/exist", "does not exist"),
    ("text:/does/not/exist.txt", "does not exist"),
    ("digits:extra", "takes no argument"),
    ("", "a data source is a string"),
])
def test_bad_sources_are_clear_errors(spec, message):
    with pytest.raises((DataError, ConfigError), match=message):
        genkit.load_data(spec)


def test_empty_sources_are_errors(tmp_path):
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(DataError, match="is empty"):
        genkit.load_data(f"text:{tmp_path / 'empty.txt'}")
    (tmp_path / "imgs").mkdir()
    with pytest.raises(DataError, match="holds no images"):
        genkit.load_data(f"folder:{tmp_path / 'imgs'}")
