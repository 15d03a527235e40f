"""The gpt plugin: tokenizers, training through the engine, fine-tuning, checkpoints that
open in plain transformers, sampling options, per-sample seeds, and errors.

Tiny models on the CPU (2 layers, 2 heads, width 32, context 32, character tokenizer).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import genkit
from genkit.data.sources import pydoc_text
from genkit.data.types import TextData
from genkit.errors import ConfigError, DataError, SamplingError

TINY = dict(tokenizer="char", n_layer=2, n_head=2, n_embd=32, block_size=32)
TRAIN = dict(batch_size=16, lr=3e-3, device="cpu", progress=False, log_with="none")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[genkit.Generator, dict, Path]:
    """A tiny char model: held-out figures before training, then trained 80 steps into a run dir."""
    torch.manual_seed(0)
    g = genkit.create("gpt", **TINY)
    g.make_dataset(genkit.load_data("pydoc"), "train")  # trains the tokenizer
    before = g.evaluate(genkit.load_data("pydoc", split="test"))
    out = tmp_path_factory.mktemp("gpt-run")
    g.train("pydoc", steps=80, out=out, **TRAIN)
    return g, before, out / "model"


def _ids(g: genkit.Generator, text: str) -> list[int]:
    return g.tokenizer(text)["input_ids"]


# ------------------------------------------------------------------------- tokenizers
@pytest.mark.parametrize("kind", ["bpe", "char"])
def test_tokenizer_round_trip_on_the_corpus(kind: str, tmp_path: Path) -> None:
    from genkit_gpt.tokenizer import encode, train_tokenizer
    from transformers import AutoTokenizer

    text = pydoc_text()
    tok = train_tokenizer(text, kind, vocab_size=1024, max_length=64)
    ids = encode(tok, text)
    assert tok.decode(ids) == text
    assert tok.eos_token_id not in ids  # EOS is its own token, never '\n'
    if kind == "bpe":
        assert len(tok) == 1024 and len(text) / len(ids) > 2.5  # merges learnt
    else:
        assert len(ids) == len(text) and len(tok) == len(set(text)) + 2  # + EOS, <unk>
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    sample = text[:5000]
    assert again(sample)["input_ids"] == encode(tok, sample)
    assert again.decode(again(sample)["input_ids"]) == sample


# --------------------------------------------------------------------------- training
def test_training_lowers_validation_loss_and_records_the_vocab(trained) -> None:
    g, before, model_dir = trained
    after = g.training_summary["eval"]
    assert set(after) == {"val_loss", "val_bpc", "val_ppl"}
    assert after["val_loss"] < before["val_loss"] - 1.0  # from ~log(V) nats
    assert after["val_bpc"] < 4.5 < before["val_bpc"]
    manifest = genkit.load(model_dir, device="cpu").config
    assert manifest.vocab_size == len(g.tokenizer) == g.model.config.vocab_size


def test_bits_per_char_is_nats_over_chars() -> None:
    g = genkit.create("gpt", **TINY)
    text = pydoc_text()[:3000]
    g.make_dataset(TextData(text), "train")
    figures = g.evaluate(TextData(text))
    # char tokenizer: one token per char (+ BOS predicting nothing), so bpc = loss / ln 2
    assert figures["val_bpc"] == pytest.approx(figures["val_loss"] / 0.6931471805599453, rel=1e-6)


# ------------------------------------------------------------------------ checkpoints
def test_checkpoint_opens_in_plain_transformers(trained) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

    g, _, model_dir = trained
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tok = AutoTokenizer.from_pretrained(model_dir)
    x = torch.tensor([_ids(g, "The return statement")])
    with torch.no_grad():
        assert torch.allclose(model(x).logits, g.model(x).logits, atol=1e-5)
    pipe = pipeline("text-generation", model=str(model_dir), device="cpu")
    out = pipe("The return", max_new_tokens=8, do_sample=False)[0]["generated_text"]
    assert out.startswith("The return") and len(out) == len("The return") + 8
    assert tok.decode(tok("yield x")["input_ids"]) == "yield x"


def test_genkit_load_gives_the_same_samples(trained) -> None:
    g, _, model_dir = trained
    loaded = genkit.load(model_dir, device="cpu")
    kw = dict(seed=3, prompt="The ", max_new_tokens=20)
    assert loaded.sample(2, **kw) == g.sample(2, **kw)


def test_fine_tune_a_local_model_keeps_its_tokenizer(tmp_path: Path) -> None:
    from genkit_gpt.tokenizer import train_tokenizer
    from transformers import GPT2Config, GPT2LMHeadModel

    base = tmp_path / "base"
    tok = train_tokenizer(pydoc_text()[:20000], "bpe", vocab_size=300, max_length=48)
    eos = tok.eos_token_id
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=48, n_embd=32, n_layer=1,
                                       n_head=2, bos_token_id=eos, eos_token_id=eos))
    model.save_pretrained(base)
    tok.save_pretrained(base)

    g = genkit.create("gpt", base=str(base))
    report = g.train("pydoc", steps=30, out=tmp_path / "run", **TRAIN)
    assert report.final_loss < report.first_loss - 0.5
    assert g.tokenizer.get_vocab() == tok.get_vocab()
    assert (g.config.vocab_size, g.config.n_layer, g.config.n_embd) == (len(tok), 1, 32)
    assert len(g.sample(1, prompt="The", max_new_tokens=60)[0]) > 3  # slides past 48 positions

    for file in base.iterdir():  # the fine-tuned checkpoint no longer needs its base
        file.unlink()
    loaded = genkit.load(tmp_path / "run", device="cpu")
    assert loaded.sample(2, seed=1, prompt="if") == g.sample(2, seed=1, prompt="if")


def test_the_shipped_default_model_is_small_fp16_and_writes_english() -> None:
    from safetensors import safe_open

    from genkit.discovery.registry import get_registry

    path = Path(get_registry().generator("gpt").default_checkpoint_path())
    assert sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) <= 3 * 1024 * 1024
    with safe_open(str(path / "model.safetensors"), framework="pt") as fh:
        assert {fh.get_tensor(k).dtype for k in fh.keys()} == {torch.float16}
    g = genkit.load(path, device="cpu")
    assert g.training_summary["eval"]["val_bpc"] < 2.0
    text = g.sample(1, prompt="The return statement", max_new_tokens=30, top_k=1)[0]
    words = re.findall(r"[a-z]+", text.lower())
    common = {"the", "is", "a", "of", "to", "and", "if", "in", "be", "it", "statement", "used"}
    assert len(words) >= 10 and sum(w in common for w in words) >= len(words) / 3


# --------------------------------------------------------------------------- sampling
def test_top_k_1_is_greedy_like_transformers_generate(trained) -> None:
    g = trained[0]
    prompts = ["The return statement", "A"]
    texts = g.sample(2, prompts=prompts, top_k=1, max_new_tokens=12, stop_at_eos=False)
    for prompt, text in zip(prompts, texts):
        x = torch.tensor([_ids(g, prompt)])
        greedy = g.model.generate(x, attention_mask=torch.ones_like(x), do_sample=False,
                                  max_new_tokens=12, eos_token_id=None, pad_token_id=0)
        assert text == g.tokenizer.decode(greedy[0], skip_special_tokens=True)
    tiny_p = g.sample(2, prompts=prompts, top_p=1e-6, max_new_tokens=12, stop_at_eos=False)
    assert tiny_p == texts


def test_same_seed_same_text_and_samples_do_not_depend_on_the_batch(trained) -> None:
    g = trained[0]
    kw = dict(max_new_tokens=80, temperature=1.0, stop_at_eos=False)  # 80 > context 32: slides
    prompts = ["x", "The return statement is", "def f"]
    batched = g.sample(3, seed=5, prompts=prompts, batch_size=3, **kw)
    alone = g.sample(3, seed=5, prompts=prompts, batch_size=1, **kw)
    assert batched == alone
    assert batched != g.sample(3, seed=6, prompts=prompts, batch_size=3, **kw)
    assert all(len(t) == len(p) + 80 for t, p in zip(batched, prompts))  # char: 1 token = 1 char


def test_options_change_the_draw(trained) -> None:
    g = trained[0]
    kw = dict(seed=0, prompt="The ", max_new_tokens=40, stop_at_eos=False)
    plain = g.sample(4, **kw)
    assert g.sample(4, top_k=3, **kw) != plain
    assert g.sample(4, temperature=0.3, **kw) != plain
    greedy = g.sample(1, top_k=1, **kw)[0]
    penalised = g.sample(1, top_k=1, repetition_penalty=3.0, **kw)[0]
    assert len(set(penalised[4:])) > len(set(greedy[4:]))  # fewer repeats
    assert g.sample(1, include_prompt=False, **kw)[0] == plain[0][len("The "):]


def test_streaming_pieces_add_up_to_the_sample(trained) -> None:
    g = trained[0]
    pieces: list[str] = []
    text = g.sample(1, seed=2, prompt="The", max_new_tokens=25, stream=pieces.append)[0]
    assert len(pieces) > 10 and "".join(pieces) == text


def test_logits_processors_are_transformers_own() -> None:
    from genkit_gpt.decoding import DecodeSettings, logits_processors
    from transformers import RepetitionPenaltyLogitsProcessor, TopKLogitsWarper, TopPLogitsWarper

    default = logits_processors(DecodeSettings(max_new_tokens=1, context=8))
    assert len(default) == 0
    full = logits_processors(DecodeSettings(max_new_tokens=1, context=8, top_k=5, top_p=0.9,
                                            temperature=0.7, repetition_penalty=1.3))
    kinds = [type(p) for p in full]
    assert kinds[0] is RepetitionPenaltyLogitsProcessor and kinds[2:] == [TopKLogitsWarper,
                                                                        TopPLogitsWarper]


def test_gpt_passes_the_conformance_kit() -> None:
    from genkit.testing import check_generator

    report = check_generator("gpt", config=TINY, steps=6, batch_size=8,
                             sample_options={"max_new_tokens": 8},
                             bad_configs=[{"tokenizer": "word"}, {"vocab_size": 100,
                                                                  "tokenizer": "bpe"}])
    assert report.modality == "text" and report.final_loss < report.first_loss


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize("option", [dict(temperature=0), dict(temperature=-1.0), dict(top_p=0),
                                    dict(top_p=1.5), dict(top_k=-1), dict(max_new_tokens=0),
                                    dict(repetition_penalty=0)])
def test_bad_sampling_options_are_config_errors(trained, option: dict) -> None:
    with pytest.raises(ConfigError):
        trained[0].sample(1, prompt="x", **option)


def test_prompt_longer_than_the_context_is_refused(trained) -> None:
    with pytest.raises(SamplingError, match="longer than the model's context of 32"):
        trained[0].sample(1, prompt="y" * 40)


@pytest.mark.parametrize("config", [dict(tokenizer="word"), dict(n_embd=30, n_head=4),
                                    dict(dropout=1.0), dict(block_size=1)])
def test_bad_configs_are_config_errors(config: dict) -> None:
    with pytest.raises(ConfigError):
        genkit.create("gpt", **config)


def test_empty_corpus_and_foreign_base_are_clear_errors(tmp_path: Path) -> None:
    g = genkit.create("gpt", **TINY)
    with pytest.raises(DataError, match="empty"):
        g.make_dataset(TextData("  \n"), "train")
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(DataError, match="empty"):
        g.train(f"text:{empty}", steps=1, **TRAIN)
    with pytest.raises(DataError, match="too short"):
        g.make_dataset(TextData("tiny text"), "train")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match="safetensors"):
        genkit.create("gpt", base=str(tmp_path)).make_dataset(TextData("abc" * 50), "train")
    with pytest.raises(ConfigError, match="no config.json"):
        genkit.create("gpt", base=str(tmp_path / "nowhere")).sample(1)


def test_dropout_runs_resume_exactly(tmp_path: Path) -> None:
    """Dropout draws from the generator the engine seeds every step, so a run stopped and
    resumed ends with the weights of a straight run (and dropout does change them)."""
    config = {**TINY, "dropout": 0.2}

    def run(out: Path, steps: int, resume: bool = False, **extra) -> dict:
        g = genkit.load(out / "model") if resume else genkit.create("gpt", **config)
        g.train("pydoc", steps=steps, out=out, resume=resume, checkpoint_every=3,
                **{**TRAIN, "lr_schedule": "constant", **extra})
        return {k: v.clone() for k, v in g.model.state_dict().items()}

    straight = run(tmp_path / "a", 6)
    run(tmp_path / "b", 3)
    resumed = run(tmp_path / "b", 6, resume=True)
    for name, value in straight.items():
        torch.testing.assert_close(resumed[name], value, rtol=0, atol=0)
    other = run(tmp_path / "c", 6, seed=1)  # another seed: other dropout masks and order
    assert any(not torch.equal(other[k], v) for k, v in straight.items())
