"""Hub ids (``ORG/NAME[@REVISION]``) resolved through a Hugging Face cache laid out here the
way ``huggingface_hub`` lays it out, offline; remote code refused; model cards that parse
as Hugging Face ``ModelCard`` s; ``genkit push``."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import genkit
from genkit.cli import cli
from genkit.data.types import TextData
from genkit.hub import HubError, parse_model_id, resolve_model_path
from genkit.store.checkpoint import load_checkpoint

REVISION = "0123456789abcdef0123456789abcdef01234567"
TEXT = "def f(x):\n    return x + 1\n" * 40


def lay_out(cache: Path, repo: str, source: Path, links: bool = True,
            refs: tuple[str, ...] = ("main",), skip: tuple[str, ...] = ()) -> Path:
    """Put ``source``'s files into ``cache`` as huggingface_hub does: ``blobs/<sha256>``,
    ``snapshots/<revision>/<file>`` (links to the blobs, or plain copies), ``refs/<ref>``."""
    storage = cache / f"models--{repo.replace('/', '--')}"
    snapshot = storage / "snapshots" / REVISION
    for file in sorted(p for p in source.rglob("*") if p.is_file()):
        rel = file.relative_to(source)
        if rel.name in skip:
            continue
        target = snapshot / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if links:
            blob = storage / "blobs" / hashlib.sha256(file.read_bytes()).hexdigest()
            blob.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(file, blob)
            os.symlink(os.path.relpath(blob, target.parent), target)
        else:
            shutil.copyfile(file, target)
    for ref in refs:
        (storage / "refs").mkdir(parents=True, exist_ok=True)
        (storage / "refs" / ref).write_text(REVISION)
    return snapshot


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty Hugging Face cache in HF_HUB_CACHE, offline, and a working directory
    where ``org/name`` is no local folder."""
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return cache


@pytest.fixture
def run():
    def invoke(*args):
        return CliRunner().invoke(cli, list(map(str, args)), catch_exceptions=False)

    return invoke


def one_line_error(result, *fragments):
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def tiny_causal_lm(directory: Path) -> Path:
    """A plain transformers causal LM directory (GPT-2 shape, character tokenizer)."""
    torch.manual_seed(0)
    g = genkit.create("gpt", tokenizer="char", n_layer=1, n_head=2, n_embd=16, block_size=16)
    g.make_dataset(TextData(TEXT), "train")  # learns the tokenizer
    g.save(directory)
    for name in ("genkit.json", "README.md"):
        (directory / name).unlink()
    return directory


def pixels(images):
    return np.stack([np.asarray(im, dtype=np.float64) for im in images])


# ------------------------------------------------------------------------- resolution
def test_ids_and_paths_are_told_apart():
    assert parse_model_id("org/name") == parse_model_id("org/name@main").__class__("org/name")
    assert parse_model_id("org/name@refs/pr/1").revision == "refs/pr/1"
    for local in ("./org/name", "/abs/path", "~/x/y", "a/b/c", "name", "org/na--me", ""):
        assert parse_model_id(local) is None, local


def test_a_genkit_checkpoint_id_loads_from_the_cache(toy_registry, hub, tmp_path, run):
    g = genkit.create("toy", hidden=16)
    torch.nn.init.normal_(g.net[0].weight)
    g.save(tmp_path / "src")
    lay_out(hub, "org/toy", tmp_path / "src", links=False, refs=("main", "v1"))
    for spec in ("org/toy", "org/toy@v1", f"org/toy@{REVISION}"):
        loaded = genkit.load(spec, device="cpu")
        assert pixels(loaded.sample(3, seed=1)).tolist() == pixels(g.sample(3, seed=1)).tolist()
    result = run("info", "org/toy")
    assert result.exit_code == 0 and "identity" in result.output, result.output


def test_a_genkit_checkpoint_id_loads_from_a_cache_of_links(toy_registry, hub, tmp_path):
    genkit.create("toy").save(tmp_path / "src")
    lay_out(hub, "org/toy", tmp_path / "src", links=True)
    assert genkit.load("org/toy", device="cpu").sample(1, seed=0)


def test_a_diffusers_pipeline_id_samples_like_its_directory(hub, tmp_path):
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 16),
                       layers_per_block=1, norm_num_groups=4,
                       down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D"))
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler()).save_pretrained(tmp_path / "ddpm")
    lay_out(hub, "org/ddpm", tmp_path / "ddpm")
    local = load_checkpoint(tmp_path / "ddpm", device="cpu", plugin="diffusion")
    cached = load_checkpoint("org/ddpm", device="cpu", plugin="diffusion")
    assert np.array_equal(pixels(local.sample(2, seed=0, steps=3)),
                          pixels(cached.sample(2, seed=0, steps=3)))


def test_a_causal_lm_id_samples_like_its_directory(hub, tmp_path):
    lay_out(hub, "org/lm", tiny_causal_lm(tmp_path / "lm"))
    local = load_checkpoint(tmp_path / "lm", device="cpu", plugin="gpt")
    cached = load_checkpoint("org/lm@main", device="cpu", plugin="gpt")
    options = {"prompt": "def", "max_new_tokens": 12}
    assert local.sample(2, seed=3, **options) == cached.sample(2, seed=3, **options)
    base = genkit.create("gpt", base="org/lm", block_size=16)
    assert len(base.make_dataset(TextData(TEXT), "train")) > 0  # the base opens from the cache


def test_a_local_path_always_wins_over_an_id(toy_registry, hub, tmp_path):
    genkit.create("toy", hidden=8).save(Path("org") / "toy")  # ./org/toy, relative
    genkit.create("toy", hidden=16).save(tmp_path / "src")
    lay_out(hub, "org/toy", tmp_path / "src", links=False)
    assert resolve_model_path("org/toy") == Path("org/toy")
    assert genkit.load("org/toy", device="cpu").config.hidden == 8


# ------------------------------------------------------------------------------ errors
def test_offline_and_not_cached_is_one_line(hub, run):
    one_line_error(run("sample", "--checkpoint", "org/missing", "-n", "1"),
                   "org/missing", "not in the Hugging Face cache", "HF_HUB_OFFLINE")
    one_line_error(run("train", "--plugin", "gpt", "--out", "r", "--set", "base=org/missing",
                       "--steps", "1"), "base model org/missing", "not in the Hugging Face cache")


def test_a_bad_revision_is_one_line(toy_registry, hub, tmp_path, run):
    genkit.create("toy").save(tmp_path / "src")
    lay_out(hub, "org/toy", tmp_path / "src", links=False, refs=("main",))
    one_line_error(run("info", "org/toy@v9"), "org/toy has no revision 'v9'", "cached: main")
    one_line_error(run("sample", "--checkpoint", "org/toy@v9"), "no revision 'v9'")


def test_weights_missing_from_the_cache_is_one_line(hub, tmp_path):
    lay_out(hub, "org/lm", tiny_causal_lm(tmp_path / "lm"), skip=("model.safetensors",))
    with pytest.raises(HubError, match="only its config files are in the Hugging Face cache"):
        resolve_model_path("org/lm")


def test_remote_code_is_refused(hub, tmp_path, run):
    lm = tiny_causal_lm(tmp_path / "lm")
    config = json.loads((lm / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.EvilLM"}
    (lm / "config.json").write_text(json.dumps(config))
    lay_out(hub, "org/evil", lm)
    with pytest.raises(HubError, match="needs remote code .*auto_map.*never runs code"):
        resolve_model_path("org/evil")
    one_line_error(run("train", "--plugin", "gpt", "--out", "r", "--set", f"base={lm}",
                       "--steps", "1"), "needs remote code")
    index = tmp_path / "pipe"
    index.mkdir()
    (index / "model_index.json").write_text(json.dumps(
        {"_class_name": "DDPMPipeline", "unet": ["my_module", "MyUNet"],
         "scheduler": ["diffusers", "DDPMScheduler"]}))
    lay_out(hub, "org/custom", index)
    with pytest.raises(HubError, match="component 'unet' comes from 'my_module'"):
        resolve_model_path("org/custom")


def test_only_configs_then_the_named_safetensors_are_fetched(hub, tmp_path, monkeypatch):
    """Online: configs first (checked), then exactly the weights they name; never pickle."""
    from genkit.hub import resolve as hub_resolve

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    remote = tiny_causal_lm(tmp_path / "lm")
    (remote / "pytorch_model.bin").write_bytes(b"pickle")
    calls = []

    def fake_snapshot(**kwargs):
        calls.append(kwargs)
        return str(lay_out(hub, kwargs["repo_id"], remote, links=False))

    monkeypatch.setattr(hub_resolve, "_snapshot", fake_snapshot)
    assert resolve_model_path("org/lm").name == REVISION
    assert [c["allow_patterns"] for c in calls] == [
        ["*.json", "*.txt", "*.model"], ["*.json", "*.txt", "*.model", "model*.safetensors"]]
    assert "*.bin" in calls[1]["ignore_patterns"] and not calls[0]["local_files_only"]
    assert calls[0]["cache_dir"] == str(hub)


# ---------------------------------------------------------------------- model cards
def test_the_model_card_is_a_hugging_face_model_card(toy_registry, tmp_path):
    from huggingface_hub import ModelCard

    from genkit.store.modelcard import render_model_card

    genkit.create("toy").save(tmp_path / "ckpt")
    card = ModelCard.load(tmp_path / "ckpt" / "README.md")
    assert card.data.library_name == "genkit" and card.data.tags[:2] == ["genkit", "toy"]
    assert card.data.pipeline_tag == "unconditional-image-generation"
    assert card.text.lstrip().startswith("# genkit toy model")
    manifest = json.loads((tmp_path / "ckpt" / "genkit.json").read_text())
    manifest["config"].update(base="org/base-model@v2", lora_rank=8)
    manifest["training"] = {"data": "hf:org/pictures", "steps": 10,
                            "eval": {"val_loss": 0.25}}
    manifest["evaluation"] = {"fd": 1.5, "n": 60}
    (tmp_path / "card.md").write_text(render_model_card(manifest, "me/my-model"))
    card = ModelCard.load(tmp_path / "card.md")
    meta = card.data.to_dict()
    assert meta["base_model"] == "org/base-model" and meta["base_model_relation"] == "adapter"
    assert meta["datasets"] == ["org/pictures"]
    figures = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert figures == {"fd": 1.5, "n": 60.0}
    assert card.data.eval_results[0].dataset_name == "hf:org/pictures"
    assert "genkit sample --checkpoint me/my-model" in card.text


# ---------------------------------------------------------------------------- push
@pytest.fixture
def run_checkpoint(toy_registry, tmp_path):
    """A toy training run: model/ plus a step checkpoint with training state."""
    g = genkit.create("toy")
    g.train("digits", steps=2, batch_size=8, device="cpu", out=str(tmp_path / "run"),
            checkpoint_every=2, progress=False, log_with="none")
    return tmp_path / "run"


def test_push_dry_run_lists_the_files_and_prints_the_card(run_checkpoint, run):
    step = run_checkpoint / "checkpoints" / "step-00000002"
    assert (step / "training_state").is_dir()
    result = run("push", step, "me/toy-model", "--dry-run")
    assert result.exit_code == 0, result.output
    listing = result.output.split("--- README.md ---")[0]
    listed = [line.split()[0] for line in listing.splitlines() if line.startswith("  ")]
    assert sorted(listed) == ["README.md", "genkit.json", "net.safetensors"]
    assert "library_name: genkit" in result.output and "me/toy-model" in result.output
    assert "training_state" not in result.output


def test_push_offline_stops_before_any_request(run_checkpoint, run, monkeypatch):
    import huggingface_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", _never)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", _never)
    one_line_error(run("push", run_checkpoint, "me/toy-model"), "HF_HUB_OFFLINE",
                   "nothing was created")
    one_line_error(run("push", run_checkpoint, "not an id"), "is not a Hub repo id")


def _never(*args, **kwargs):
    raise AssertionError("no request may be sent")


def test_push_creates_the_repo_and_uploads_one_commit(run_checkpoint, run, monkeypatch):
    import huggingface_hub

    calls = []

    class FakeApi:
        def create_repo(self, repo_id, **kwargs):
            calls.append(("create", repo_id, kwargs))
            return f"https://huggingface.co/{repo_id}"

        def upload_folder(self, repo_id, folder_path, **kwargs):
            files = {p.relative_to(folder_path).as_posix(): p.read_bytes()
                     for p in Path(folder_path).rglob("*") if p.is_file()}
            calls.append(("upload", repo_id, files))

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: "hf_test")
    readme = (run_checkpoint / "model" / "README.md").read_text()
    result = run("push", run_checkpoint, "me/toy-model", "--private")
    assert result.exit_code == 0, result.output
    (create, repo, kwargs), (upload, _, files) = calls
    assert (create, repo, kwargs["private"], upload) == ("create", "me/toy-model", True, "upload")
    assert sorted(files) == ["README.md", "genkit.json", "net.safetensors"]
    assert b'from_pretrained' in files["README.md"] or b"me/toy-model" in files["README.md"]
    assert files["net.safetensors"] == (run_checkpoint / "model" / "net.safetensors").read_bytes()
    assert (run_checkpoint / "model" / "README.md").read_text() == readme  # only read
