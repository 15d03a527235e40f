"""Checkpoints: round trip, atomic writes, and a clear error for every damaged directory."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard

import genkit
from genkit.errors import CheckpointError
from genkit.store.checkpoint import checkpoint_identity, save_checkpoint


def _equal_samples(a, b):
    return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, b))


def test_round_trip_is_equal(toy_registry, tmp_path):
    g = genkit.create("toy", hidden=32)
    torch.nn.init.normal_(g.net[0].weight)
    g.save(tmp_path / "ckpt")
    manifest = json.loads((tmp_path / "ckpt" / "genkit.json").read_text())
    assert manifest["generator"] == "toy" and manifest["config"]["hidden"] == 32
    assert manifest["plugin"]["distribution"] == "genkit-tests"
    assert "net.safetensors" in manifest["weights"]
    card = ModelCard.load(tmp_path / "ckpt" / "README.md")  # YAML metadata, then the card
    assert card.text.lstrip().startswith("# genkit toy model")
    loaded = genkit.load(tmp_path / "ckpt", device="cpu")
    for key, value in g.net.state_dict().items():
        assert torch.equal(value, loaded.net.state_dict()[key])
    assert _equal_samples(g.sample(4, seed=3), loaded.sample(4, seed=3))


def test_half_precision_weights_load_into_float32(toy_registry, tmp_path):
    g = genkit.create("toy")
    save_checkpoint(g, tmp_path / "half", weights_dtype="float16")
    loaded = genkit.load(tmp_path / "half", device="cpu")
    assert loaded.net[0].weight.dtype == torch.float32
    assert torch.allclose(loaded.net[0].weight, g.net[0].weight, atol=1e-3)
    size = (tmp_path / "half" / "net.safetensors").stat().st_size
    g.save(tmp_path / "full")
    assert size < 0.6 * (tmp_path / "full" / "net.safetensors").stat().st_size


def test_failed_save_leaves_nothing(toy_registry, tmp_path, monkeypatch):
    g = genkit.create("toy")
    g.save(tmp_path / "ckpt")
    before = checkpoint_identity(tmp_path / "ckpt")

    def broken(directory):
        (directory / "net.safetensors").write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(g, "save_weights", broken)
    with pytest.raises(OSError):
        g.save(tmp_path / "ckpt")
    assert checkpoint_identity(tmp_path / "ckpt") == before  # old checkpoint intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no temp dir left


def test_identity_changes_with_weights(toy_registry, tmp_path):
    g = genkit.create("toy")
    g.save(tmp_path / "a")
    with torch.no_grad():
        g.net[0].weight.add_(1)
    g.save(tmp_path / "b")
    assert checkpoint_identity(tmp_path / "a") != checkpoint_identity(tmp_path / "b")


@pytest.mark.parametrize("damage, message", [
    ("missing", "does not exist"),
    ("file", "is a file"),
    ("no_manifest", "is not a genkit checkpoint"),
    ("bad_json", "is damaged"),
    ("truncated", "truncated"),
    ("no_weights", "is incomplete"),
    ("future", "upgrade genkit"),
    ("bad_tensor", "does not match the sha256"),
])
def test_damaged_checkpoints_give_clear_errors(toy_registry, tmp_path, damage, message):
    g = genkit.create("toy")
    ckpt = g.save(tmp_path / "ckpt")
    weights = ckpt / "net.safetensors"
    manifest = ckpt / "genkit.json"
    target = ckpt
    if damage == "missing":
        target = tmp_path / "nowhere"
    elif damage == "file":
        target = weights
    elif damage == "no_manifest":
        manifest.unlink()
    elif damage == "bad_json":
        manifest.write_text("{not json")
    elif damage == "truncated":
        weights.write_bytes(weights.read_bytes()[:100])
    elif damage == "no_weights":
        weights.unlink()
    elif damage == "future":
        data = json.loads(manifest.read_text())
        data["format_version"] = 99
        manifest.write_text(json.dumps(data))
    elif damage == "bad_tensor":
        size = weights.stat().st_size
        weights.write_bytes(b"\0" * size)
    with pytest.raises(CheckpointError, match=message) as info:
        genkit.load(target, device="cpu")
    assert "\n" not in str(info.value)


def test_refuses_to_overwrite_a_foreign_directory(toy_registry, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(CheckpointError, match="not a genkit checkpoint; refusing"):
        genkit.create("toy").save(tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_identity_ignores_recorded_figures(toy_registry, tmp_path):
    ckpt = genkit.create("toy").save(tmp_path / "ckpt")
    before = checkpoint_identity(ckpt)
    manifest = json.loads((ckpt / "genkit.json").read_text())
    manifest["evaluation"] = {"fd": 12.5}
    (ckpt / "genkit.json").write_text(json.dumps(manifest))
    assert checkpoint_identity(ckpt) == before
