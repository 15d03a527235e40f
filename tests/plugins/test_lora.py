"""LoRA fine-tuning through peft: gpt on a causal LM, diffusion on an unconditional UNet.

The checkpoint holds only the adapter; plain peft opens it onto the base and gives the
samples genkit gives; ``genkit export --merge`` writes a plain model that plain
transformers / diffusers open with the same samples; bad input is one line. (Text-to-image
LoRA: tests/plugins/test_text_to_image.py.)
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import genkit
from genkit.cli import cli
from genkit.data.types import TextData
from genkit.seeding import sample_seed

TEXT = "def f(x):\n    return x + 1\n\nclass A:\n    pass\n" * 40
TRAIN = dict(batch_size=8, device="cpu", progress=False, log_with="none")
GREEDY = dict(top_k=1, max_new_tokens=10, stop_at_eos=False, include_prompt=False)


def run(*args):
    return CliRunner().invoke(cli, list(map(str, args)), catch_exceptions=False)


def one_line_error(result, *fragments):
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def pixels(images):
    return np.stack([np.asarray(im, dtype=np.float64) for im in images])


def causal_lm(directory: Path) -> Path:
    """A plain transformers GPT-2-shaped causal LM with a character tokenizer."""
    torch.manual_seed(0)
    g = genkit.create("gpt", tokenizer="char", n_layer=2, n_head=2, n_embd=32, block_size=32)
    g.make_dataset(TextData(TEXT), "train")
    g.save(directory)
    return directory


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "code.txt"
    path.write_text(TEXT)
    return path


@pytest.fixture(scope="module")
def gpt_lora(tmp_path_factory, text_file):
    """A rank-4 LoRA adapter trained 8 steps on a tiny GPT-2 base, in a run directory."""
    root = tmp_path_factory.mktemp("gpt-lora")
    base = causal_lm(root / "base")
    g = genkit.create("gpt", base=str(base), lora_rank=4, block_size=32)
    report = g.train(f"text:{text_file}", steps=8, lr=2e-2, out=root / "run", **TRAIN)
    return g, base, root / "run", report


# ------------------------------------------------------------------------------- gpt
def test_the_gpt_checkpoint_holds_only_the_adapter(gpt_lora):
    from safetensors.torch import load_file

    g, base, run_dir, report = gpt_lora
    model = run_dir / "model"
    files = sorted(p.name for p in model.iterdir())
    assert files == ["README.md", "adapter_config.json", "adapter_model.safetensors",
                     "genkit.json", "tokenizer.json", "tokenizer_config.json"]
    assert list(json.loads((model / "genkit.json").read_text())["weights"]) == \
        ["adapter_model.safetensors"]
    adapter = json.loads((model / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str(base.resolve())
    assert set(adapter["target_modules"]) == {"c_attn", "c_proj"} and adapter["r"] == 4
    trainable = [n for n, p in g.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    original = load_file(str(base / "model.safetensors"))
    frozen = g.model.get_base_model().state_dict()
    key = "transformer.h.0.attn.c_attn.base_layer.weight"
    assert torch.equal(frozen[key], original["transformer.h.0.attn.c_attn.weight"])
    assert report.final_loss < report.first_loss
    card = (model / "README.md").read_text()
    assert "AutoPeftModelForCausalLM" in card and "base_model_relation" not in card  # local base


def test_the_gpt_adapter_opens_with_peft_and_samples_like_genkit(gpt_lora):
    from peft import AutoPeftModelForCausalLM, PeftModel
    from transformers import AutoModelForCausalLM

    g, base, run_dir, _ = gpt_lora
    loaded = genkit.load(run_dir, device="cpu")
    kw = dict(seed=2, prompt="def ", max_new_tokens=16)
    assert loaded.sample(3, **kw) == g.sample(3, **kw)
    prompt = "class "
    ours = loaded.sample(1, prompt=prompt, **GREEDY)[0]
    x = torch.tensor([loaded.tokenizer(prompt)["input_ids"]])
    for model in (AutoPeftModelForCausalLM.from_pretrained(run_dir / "model"),
                  PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base),
                                            run_dir / "model")):
        out = model.generate(input_ids=x, attention_mask=torch.ones_like(x), do_sample=False,
                             max_new_tokens=10, eos_token_id=None, pad_token_id=0)
        assert loaded.tokenizer.decode(out[0, x.shape[1]:], skip_special_tokens=True) == ours
    plain = genkit.load(base, device="cpu")
    assert loaded.sample(2, lora_scale=0.0, **kw) == plain.sample(2, **kw)
    assert loaded.sample(2, **kw) != plain.sample(2, **kw)


def test_the_merged_gpt_export_opens_with_plain_transformers(gpt_lora, tmp_path):
    from transformers import AutoModelForCausalLM

    _, _, run_dir, _ = gpt_lora
    loaded = genkit.load(run_dir, device="cpu")
    result = run("export", "--merge", run_dir, tmp_path / "merged")
    assert result.exit_code == 0, result.output
    assert not list((tmp_path / "merged").glob("adapter_*"))
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    prompt = "def "
    x = torch.tensor([loaded.tokenizer(prompt)["input_ids"]])
    out = model.generate(input_ids=x, attention_mask=torch.ones_like(x), do_sample=False,
                         max_new_tokens=10, eos_token_id=None, pad_token_id=0)
    ours = loaded.sample(1, prompt=prompt, **GREEDY)[0]
    assert loaded.tokenizer.decode(out[0, x.shape[1]:], skip_special_tokens=True) == ours
    merged = genkit.load(tmp_path / "merged", device="cpu")
    assert merged.config.lora_rank == 0
    assert merged.sample(1, prompt=prompt, **GREEDY)[0] == ours
    one_line_error(run("export", "--merge", run_dir, tmp_path / "merged"), "not an empty folder")
    one_line_error(run("export", "--merge", tmp_path / "merged", tmp_path / "again"),
                   "is not a LoRA checkpoint")
    assert run("export", run_dir, tmp_path / "x").exit_code == 2  # --merge is required


def test_a_resumed_gpt_lora_run_ends_with_the_same_adapter(gpt_lora, text_file, tmp_path):
    from safetensors.torch import load_file

    _, base, _, _ = gpt_lora
    settings = dict(base=str(base), lora_rank=2, block_size=32)
    train = dict(lr=1e-2, lr_schedule="constant", **TRAIN)  # the same lr whatever --steps is
    genkit.create("gpt", **settings).train(f"text:{text_file}", steps=4,
                                           out=tmp_path / "whole", **train)
    genkit.create("gpt", **settings).train(f"text:{text_file}", steps=2,
                                           out=tmp_path / "parts", checkpoint_every=2, **train)
    genkit.create("gpt", **settings).train(f"text:{text_file}", steps=4,
                                           out=tmp_path / "parts", resume=True, **train)
    whole = load_file(str(tmp_path / "whole" / "model" / "adapter_model.safetensors"))
    parts = load_file(str(tmp_path / "parts" / "model" / "adapter_model.safetensors"))
    assert whole.keys() == parts.keys() and all(torch.equal(whole[k], parts[k]) for k in whole)


def test_a_llama_like_base_gets_its_attention_projections(tmp_path, text_file):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    gpt = causal_lm(tmp_path / "gpt")
    tokenizer = AutoTokenizer.from_pretrained(gpt)
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32,
                                 num_hidden_layers=1, num_attention_heads=2,
                                 num_key_value_heads=2, max_position_embeddings=64,
                                 bos_token_id=tokenizer.bos_token_id,
                                 eos_token_id=tokenizer.eos_token_id)).save_pretrained(tmp_path / "llama")
    tokenizer.save_pretrained(tmp_path / "llama")
    g = genkit.create("gpt", base=str(tmp_path / "llama"), lora_rank=2, block_size=32)
    g.train(f"text:{text_file}", steps=1, lr=1e-3, out=tmp_path / "run", **TRAIN)
    adapter = json.loads((tmp_path / "run" / "model" / "adapter_config.json").read_text())
    assert set(adapter["target_modules"]) == {"q_proj", "k_proj", "v_proj", "o_proj"}


def test_gpt_lora_bad_input_is_one_line(gpt_lora, text_file, tmp_path):
    _, base, _, _ = gpt_lora
    data = f"text:{text_file}"
    one_line_error(run("train", "--plugin", "gpt", "--out", tmp_path / "a", "--data", data,
                       "--set", "lora_rank=4"), "lora_rank needs base=")
    one_line_error(run("train", "--plugin", "gpt", "--out", tmp_path / "b", "--data", data,
                       "--set", f"base={base}", "--set", "lora_rank=4",
                       "--set", "lora_targets=q_proj,nope"),
                   "lora_targets q_proj, nope match no module", "c_attn")
    for family in ("gan", "vae"):
        one_line_error(run("train", "--plugin", family, "--out", tmp_path / family,
                           "--set", "lora_rank=4"), f"unknown {family} config key 'lora_rank'")
    one_line_error(run("sample", "--checkpoint", base, "--prompt", "def", "--lora-scale", "0.5"),
                   "lora_scale works only on a LoRA checkpoint")
    # an adapter whose base is gone
    moved = tmp_path / "base"
    shutil.copytree(base, moved)
    genkit.create("gpt", base=str(moved), lora_rank=2, block_size=32).train(
        data, steps=1, lr=1e-3, out=tmp_path / "orphan", **TRAIN)
    shutil.rmtree(moved)
    one_line_error(run("sample", "--checkpoint", tmp_path / "orphan", "--prompt", "def"),
                   "needs its base model", "does not exist")


# ------------------------------------------------------------------------- diffusion
@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """24 small RGB images in a folder (no labels, no captions needed)."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i in range(24):
        array = np.zeros((8, 8, 3), np.uint8)
        array[..., i % 3] = 200
        array[2:6, 2:6] = rng.integers(0, 255, (4, 4, 3))
        Image.fromarray(array).save(folder / f"{i:02d}.png")
    return folder


@pytest.fixture(scope="module")
def ddpm_lora(tmp_path_factory, images):
    """A DDPM pipeline with attention, and a LoRA adapter trained on its UNet."""
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    root = tmp_path_factory.mktemp("ddpm-lora")
    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 16),
                       layers_per_block=1, norm_num_groups=4, attention_head_dim=4,
                       down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D"))
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler()).save_pretrained(root / "base")
    g = genkit.create("diffusion", base=str(root / "base"), lora_rank=4)
    g.train(f"folder:{images}", steps=6, lr=2e-2, out=root / "run", **TRAIN)
    return g, root / "base", root / "run"


def test_the_unet_adapter_opens_with_peft_and_samples_like_genkit(ddpm_lora):
    from diffusers import DDPMPipeline
    from peft import PeftModel

    g, base, run_dir = ddpm_lora
    model = run_dir / "model"
    assert sorted(p.name for p in model.iterdir()) == [
        "README.md", "adapter_config.json", "adapter_model.safetensors", "genkit.json"]
    assert g.ema is None  # no EMA of a frozen UNet: the adapter alone trains
    adapter = json.loads((model / "adapter_config.json").read_text())
    assert set(adapter["target_modules"]) == {"to_q", "to_k", "to_v", "to_out.0"}
    loaded = genkit.load(run_dir, device="cpu")
    ours = pixels(loaded.sample(3, seed=0, scheduler="ddpm", steps=10))
    assert np.abs(ours - pixels(loaded.sample(3, seed=0, scheduler="ddpm", steps=10,
                                              lora_scale=0.0))).max() > 2  # the adapter acts
    pipe = DDPMPipeline.from_pretrained(base)
    pipe.unet = PeftModel.from_pretrained(pipe.unet, model)
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe(batch_size=3, num_inference_steps=10, output_type="pil",
                  generator=[torch.Generator().manual_seed(sample_seed(0, i)) for i in range(3)])
    assert np.abs(ours - pixels(theirs.images)).max() <= 1
    assert "PeftModel.from_pretrained(pipe.unet" in (model / "README.md").read_text()


def test_the_merged_unet_export_is_a_plain_ddpm_pipeline(ddpm_lora, tmp_path):
    from diffusers import DDPMPipeline

    _, _, run_dir = ddpm_lora
    ours = pixels(genkit.load(run_dir, device="cpu").sample(2, seed=1, scheduler="ddpm", steps=8))
    assert run("export", "--merge", run_dir, tmp_path / "merged").exit_code == 0
    pipe = DDPMPipeline.from_pretrained(tmp_path / "merged", use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe(batch_size=2, num_inference_steps=8, output_type="pil",
                  generator=[torch.Generator().manual_seed(sample_seed(1, i)) for i in range(2)])
    assert np.abs(ours - pixels(theirs.images)).max() <= 1
    merged = genkit.load(tmp_path / "merged", device="cpu")
    assert np.abs(ours - pixels(merged.sample(2, seed=1, scheduler="ddpm", steps=8))).max() <= 1


def test_a_unet_without_the_default_targets_is_one_line(images, tmp_path):
    genkit.create("diffusion", image_size=8, block_out_channels=(8, 16),
                  norm_num_groups=4).save(tmp_path / "plain")  # no attention layers
    one_line_error(run("train", "--plugin", "diffusion", "--out", tmp_path / "r",
                       "--data", f"folder:{images}", "--set", f"base={tmp_path / 'plain'}",
                       "--set", "lora_rank=4", "--steps", "1"),
                   "has none of the modules LoRA adapts by default (to_q, to_k, to_v, to_out.0)",
                   "lora_targets=", "conv1")
    g = genkit.create("diffusion", base=str(tmp_path / "plain"), lora_rank=2,
                      lora_targets=("conv1", "conv2"))
    g.train(f"folder:{images}", steps=1, lr=1e-3, out=tmp_path / "convs", **TRAIN)
    assert (tmp_path / "convs" / "model" / "adapter_model.safetensors").is_file()
