"""Property-based fuzzing (hypothesis) of CLI arguments, genkit.json fields, ``--set``
values and training-state files: whatever the input, no traceback ever escapes.

The commands run in this process through ``click.testing.CliRunner`` on ``genkit.cli.cli``
(fast: torch loads once). The property: the command ends with exit status 0 or 2, any
exception is the ``SystemExit`` of that exit, and "Traceback" appears in no output.

Examples are few (25-50 a test, under a minute in all) and derandomized: the same inputs
every run, so a failure reproduces. ``GENKIT_FUZZ_EXPLORE=1`` draws new ones,
``GENKIT_FUZZ_EXAMPLES=N`` runs N a test, ``GENKIT_FUZZ_SHRINK=1`` shrinks a failure.
Explicit ``@example`` cases pin inputs that once escaped as tracebacks.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest
from hostile_support import TINY_VAE
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

FUZZ = settings(
    max_examples=25,
    deadline=None,
    derandomize=not os.environ.get("GENKIT_FUZZ_EXPLORE"),
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                           HealthCheck.data_too_large, HealthCheck.filter_too_much],
    print_blob=True,
    # No shrinking by default: a failure is reported as found, which keeps the suite's
    # time bounded while defects remain; GENKIT_FUZZ_SHRINK=1 asks for minimal examples.
    phases=[Phase.explicit, Phase.reuse, Phase.generate,
            *([Phase.shrink] if os.environ.get("GENKIT_FUZZ_SHRINK") else [])],
)
EXAMPLES = int(os.environ.get("GENKIT_FUZZ_EXAMPLES", "0"))  # 0: each test's own count


def fuzz(examples: int) -> settings:
    """The suite's settings with ``examples`` examples (GENKIT_FUZZ_EXAMPLES overrides)."""
    return settings(FUZZ, max_examples=EXAMPLES or examples)


UNCONDITIONAL = ["--set", "image_size=8", "--set", "base_width=4", "--set", "latent_dim=2"]
QUIET = ["--log-with", "none", "--no-progress"]


@contextlib.contextmanager
def scratch() -> Iterator[Path]:
    """A fresh temporary folder, the current directory while the example runs."""
    old = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="genkit-fuzz-") as folder:
        os.chdir(folder)
        try:
            yield Path(folder)
        finally:
            os.chdir(old)


def invoke(args: list[str]) -> None:
    """Run ``genkit ARGS`` in process; fail on an escaped exception or a traceback."""
    from click.testing import CliRunner

    from genkit.cli import cli

    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=True)
    output = result.output + (result.stderr if _has_stderr(result) else "")
    escaped = result.exception is not None and not isinstance(result.exception, SystemExit)
    detail = "".join(traceback.format_exception(*result.exc_info)) if escaped else ""
    assert not escaped, f"genkit {' '.join(map(str, args))}\n{detail}"
    assert "Traceback" not in output, f"genkit {' '.join(map(str, args))}\n{output[-3000:]}"
    assert result.exit_code in (0, 2), \
        f"genkit {' '.join(map(str, args))}: exit {result.exit_code}\n{output[-3000:]}"


def _has_stderr(result) -> bool:
    try:
        return bool(result.stderr)
    except ValueError:  # older click: stderr not captured separately
        return False


# Hostile values: the empty string, signs, huge numbers, NaN, separators, control and
# non-ASCII characters, path-like strings. Numbers stay small enough that a value taken
# as a model width cannot exhaust the shared machine's memory.
WORDS = st.sampled_from(["", " ", "0", "-1", "-0", "1", "2", "3", "8", "nan", "-inf", "inf",
                         "1e309", "1e-320", "0x10", "1_0", "true", "false", "none", "null",
                         "None", "[]", "{}", "8,8", "(8)", ",", "=", "==", "a=b", "..", "/",
                         "../../etc/passwd", "~", "\x00", "\n", "é", "🙂", "%s", "--help"])
SMALL_INTS = st.integers(min_value=-3, max_value=40).map(str)
HOSTILE = st.one_of(WORDS, SMALL_INTS, st.floats(allow_nan=True, allow_infinity=True).map(str),
                    st.text(max_size=12))


def _no_nul(values: list[str]) -> bool:  # argv cannot carry NUL bytes
    return all("\x00" not in v for v in values)


def some_options(table: dict, max_size: int) -> st.SearchStrategy:
    """Up to ``max_size`` options of ``table``, each with a value: a flat argument list.
    Few at a time, so that an example often gets past validation into the real work."""
    def pairs(keys: list[str]) -> st.SearchStrategy:
        return st.tuples(*[table[k].map(lambda v, k=k: [k, v]) for k in keys])

    return (st.lists(st.sampled_from(sorted(table)), max_size=max_size, unique=True)
            .flatmap(pairs).map(lambda items: [a for item in items for a in item]))


# ------------------------------------------------------------------ CLI arguments
SAMPLE_OPTIONS = {
    "-n": st.one_of(st.sampled_from(["0", "-1", "1", "3", "x", "1.5", "", "1e3"]), SMALL_INTS),
    "--batch-size": st.sampled_from(["0", "-3", "1", "2", "abc", "1.5", ""]),
    "--seed": st.sampled_from(["-1", "0", "7", "18446744073709551616", "-9223372036854775809",
                               "x"]),
    "--format": st.sampled_from(["png", "npy", "jsonl", "txt", "gif", ""]),
    "--label": st.sampled_from(["0", "9", "10", "-1", "x", ""]),
    "--labels": st.sampled_from(["0,1", "", ",", "1,,2", "a,b", "99", "-1", "0" * 40]),
    "--per-condition": st.sampled_from(["0", "1", "2", "-1", "x"]),
    "--shard": st.sampled_from(["0/1", "1/2", "2/2", "0/0", "x", "-1/2", "1/", "/", "0/-1"]),
    "--device": st.sampled_from(["cpu", "auto", "cuda", "cuda:7", "mps", "tpu", "", "cpu:1"]),
    "--prompt": st.text(max_size=20),
    "--grid": st.sampled_from(["g.png", "", ".", "o", "sub/dir/g.png", "g.jpg", "o/000000.png"]),
    "--set": st.sampled_from(["temperature=0", "temperature=nan", "temperature=-1",
                              "temperature=inf", "interpolate=1", "interpolate=3", "bogus=1",
                              "=", "temperature", "temperature==2", "interpolate=-5"]),
    "--num-processes": st.sampled_from(["0", "-1", "1", "x"]),
}
EXTRA_SAMPLE_ARGS = st.sampled_from([[], ["--overwrite"], ["--temperature", "0.5"],
                                     ["--interpolate", "x"], ["--whatever"], ["--", "x"],
                                     ["stray"], ["--temperature"], ["--interpolate=4"]])


@fuzz(50)
@example(args=["--seed", "18446744073709551616", "--labels", "0,1"], extra=[], out="o")
@example(args=["--shard", "1/2", "--grid", "o"], extra=["--overwrite"], out="o")
@given(args=some_options(SAMPLE_OPTIONS, 4), extra=EXTRA_SAMPLE_ARGS,
       out=st.sampled_from(["o", "o/deeper", ".", "", "ck"]))
def test_fuzz_sample_arguments(models, args, extra, out):
    if not _no_nul(args):
        return
    with scratch() as folder:
        shutil.copytree(models["a"], folder / "ck")
        invoke(["sample", "--checkpoint", "ck", "--out", out, "--no-progress", *args, *extra])


TRAIN_OPTIONS = {
    "--steps": st.sampled_from(["0", "-1", "1", "2", "x", "1.5", ""]),
    "--epochs": st.sampled_from(["0", "-1", "x", ""]),
    "--batch-size": st.sampled_from(["0", "-1", "4", "100000", "x"]),
    "--lr": st.sampled_from(["0", "-1", "nan", "inf", "1e-3", "x", "1e308", "1e-320"]),
    "--precision": st.sampled_from(["no", "fp16", "bf16", "fp8"]),
    "--grad-accum": st.sampled_from(["0", "-1", "2"]),
    "--clip-grad": st.sampled_from(["0", "-1", "nan", "1", "inf"]),
    "--warmup-steps": st.sampled_from(["-1", "0", "5"]),
    "--lr-schedule": st.sampled_from(["constant", "cosine", "linear", "step"]),
    "--ema-decay": st.sampled_from(["0", "1", "-0.5", "0.5", "nan"]),
    "--keep": st.sampled_from(["0", "-1", "1"]),
    "--checkpoint-every": st.sampled_from(["0", "-1", "1"]),
    "--log-every": st.sampled_from(["0", "-1", "1"]),
    "--num-workers": st.sampled_from(["-1", "0"]),
    "--device": st.sampled_from(["cpu", "cuda", "cuda:3", "mps", "x", ""]),
    "--seed": st.sampled_from(["-1", "0", "18446744073709551616", "x"]),
    "--data": st.sampled_from(["digits", "pydoc", "moon", "folder:", "folder:/nonexistent",
                               "text:", "hf:", "digits:extra", ":", "", "folder:ck",
                               "text:ck/genkit.json"]),
    "--num-processes": st.sampled_from(["0", "-1", "1"]),
}


@fuzz(30)
@example(args=[], resume=True, out="run")  # resume a run that already reached --steps
@example(args=["--lr", "1e308"], resume=False, out="r")  # a loss that becomes inf/nan
@given(args=some_options(TRAIN_OPTIONS, 3), resume=st.booleans(),
       out=st.sampled_from(["r", "run", "ck", "r/x"]))
def test_fuzz_train_arguments(models, args, resume, out):
    if not _no_nul(args):
        return
    with scratch() as folder:
        shutil.copytree(models["a"], folder / "ck")
        shutil.copytree(models["run"], folder / "run")
        invoke(["train", "--plugin", "vae", "--out", out, "--steps", "2", "--batch-size", "8",
                *UNCONDITIONAL, *QUIET, *(["--resume"] if resume else []), *args])


# ---------------------------------------------------------------- genkit.json fields
JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(min_value=-5, max_value=64),
              st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=10)),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=8)
TOP_KEYS = ["format", "format_version", "generator", "modality", "plugin", "versions", "config",
            "training", "weights", "created", "evaluation"]


@fuzz(50)
@example(where=("weights", "encoder"), value=None, delete=False)
@example(where=("config",), value=[[[[]]]], delete=False)
@given(where=st.one_of(st.sampled_from(TOP_KEYS).map(lambda k: (k,)),
                       st.sampled_from(list(TINY_VAE) + ["likelihood", "sigma", "beta",
                                                         "kl_warmup_steps", "extra"])
                       .map(lambda k: ("config", k)),
                       st.sampled_from(["encoder", "decoder", "../x", "/etc/hostname", ""])
                       .map(lambda k: ("weights", k)),
                       st.sampled_from(["bytes", "sha256"]).map(lambda k: ("weights", None, k))),
       value=JSON_VALUES, delete=st.booleans())
def test_fuzz_genkit_json_fields(models, where, value, delete):
    with scratch() as folder:
        ck = shutil.copytree(models["a"], folder / "ck")
        manifest = json.loads((ck / "genkit.json").read_text())
        target = manifest
        path = list(where)
        if path[0] == "weights" and path[-1] in ("encoder", "decoder"):
            path[-1] = f"{path[-1]}/model.safetensors"
        if len(path) == 3:  # a field of the first weight entry
            path[1] = next(iter(manifest["weights"]))
        for key in path[:-1]:
            target = target[key]
        if delete:
            target.pop(path[-1], None)
        else:
            target[path[-1]] = value
        (ck / "genkit.json").write_text(json.dumps(manifest))
        invoke(["info", "ck"])
        invoke(["info", "ck", "--json"])
        invoke(["sample", "--checkpoint", "ck", "-n", "1", "--out", "o", "--no-progress"])


# --------------------------------------------------------------------- --set values
CONFIG_KEYS = st.one_of(st.sampled_from(list(TINY_VAE) + ["channels", "likelihood", "sigma",
                                                           "beta", "kl_warmup_steps", "size",
                                                           "column", "label_column"]),
                        st.text(max_size=6))


@fuzz(30)
@example(key="size", value="==", data="folder:images")
@example(key="channels", value="2", data="digits")
@given(key=CONFIG_KEYS, value=HOSTILE, data=st.sampled_from(["digits", "folder:images"]))
def test_fuzz_train_set_values(models, key, value, data):
    if not _no_nul([key, value]):
        return
    with scratch() as folder:
        from hostile_support import write_png

        for i in range(8):
            write_png(folder / "images" / f"{i}.png", value=i)
        invoke(["train", "--plugin", "vae", "--data", data, "--out", "r", "--steps", "1",
                "--batch-size", "4", *UNCONDITIONAL, *QUIET, "--set", f"{key}={value}"])


@fuzz(40)
@example(key="interpolate", value="2000", how="option")
@given(key=st.one_of(st.sampled_from(["temperature", "interpolate"]), st.text(max_size=6)),
       value=HOSTILE, how=st.sampled_from(["set", "option"]))
def test_fuzz_sample_set_values(models, key, value, how):
    if not _no_nul([key, value]):
        return
    option = ["--set", f"{key}={value}"] if how == "set" else [f"--{key}", value]
    with scratch() as folder:
        shutil.copytree(models["a"], folder / "ck")
        invoke(["sample", "--checkpoint", "ck", "-n", "2", "--out", "o", "--no-progress", *option])


# -------------------------------------------------------------- training-state files
@fuzz(30)
@example(which="online.safetensors", how="truncate", where=0.0, noise=b"\x00", value=None)
@example(which="state.json", how="json_field", where=1.0, noise=b"\x00", value="x")
@given(which=st.sampled_from(["online.safetensors", "optimizer", "ema", "rng.safetensors",
                              "state.json"]),
       how=st.sampled_from(["truncate", "flip", "replace", "empty", "json_field"]),
       where=st.floats(min_value=0.0, max_value=1.0), noise=st.binary(min_size=1, max_size=64),
       value=JSON_VALUES)
def test_fuzz_training_state_files(models, which, how, where, noise, value):
    with scratch() as folder:
        run = shutil.copytree(models["run"], folder / "run")
        state = sorted((run / "checkpoints").glob("step-*"))[-1] / "training_state"
        matches = sorted(state.glob(f"{which}*")) or sorted(state.glob("*"))
        file = matches[0]
        data = bytearray(file.read_bytes())
        at = min(int(where * len(data)), max(len(data) - 1, 0))
        if how == "truncate":
            data = data[:at]
        elif how == "flip":
            for k, byte in enumerate(noise):
                data[(at + k * 7919) % len(data)] ^= byte or 0xFF
        elif how == "replace":
            data = bytearray(noise * (len(data) // len(noise) + 1))[: len(data)]
        elif how == "empty":
            data = bytearray()
        else:  # a field of state.json set to a random JSON value
            file = state / "state.json"
            meta = json.loads(file.read_text())
            keys = sorted(meta)
            meta[keys[int(where * (len(keys) - 1))]] = value
            data = bytearray(json.dumps(meta).encode())
        file.write_bytes(bytes(data))
        invoke(["train", "--out", "run", "--resume", "--steps", "3", "--batch-size", "8",
                "--device", "cpu", *QUIET])


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    torch.set_num_threads(1)
