"""The nine numbered defects of issue 13, each with the issue's reproduction.

Every refusal must be exit status 2 with exactly one line on stderr and no traceback, and
must leave every file it did not write exactly as it was (see conftest.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import signal
import struct
import time
from pathlib import Path

import pytest
from hostile_support import (
    QUICK_TRAIN,
    TINY_VAE_SETS,
    Result,
    alive,
    assert_changes_only_under,
    assert_no_traceback,
    assert_nothing_written,
    assert_one_line_error,
    background,
    child_env,
    copy_tree,
    edit_json,
    genkit_command,
    make_plugin,
    run_genkit,
    run_python,
    snapshot,
    wait_for,
    write_png,
)

WEIGHT = "decoder/model.safetensors"
SECRET_SIZE = 31337  # the size of a file outside the checkpoint: must never be revealed


def _metrics(run: Path) -> list[dict]:
    file = run / "metrics.jsonl"
    if not file.exists():
        return []
    rows = []
    for line in file.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return rows


# ------------------------------------------------------------------------------ 1
def test_1_overwrite_never_deletes_files_genkit_did_not_write(work):
    """`--overwrite` into a folder of user files (no run.json) is refused; nothing goes."""
    p = work / "p"
    write_png(p / "holiday.png", size=16, value=3)
    (p / "notes.txt").write_text("call the plumber\n")
    write_png(p / "samples_2023" / "000000.png", value=5)
    (p / "samples_2023" / "manifest.jsonl").write_text('{"mine": true}\n')
    before = snapshot(work)
    result = run_genkit("sample", "--plugin", "vae", "-n", "2", "--out", "p", "--overwrite",
                        "--no-progress", cwd=work)
    assert_one_line_error(result, notice_ok=True)
    assert_nothing_written(before, snapshot(work))


def test_1_a_users_000000_png_is_never_silently_replaced(work):
    """Without --overwrite, a user's own file that happens to be named like a sample is
    not replaced: the folder holds files genkit did not write, so it is refused."""
    write_png(work / "p" / "000000.png", size=16, value=9)
    before = snapshot(work)
    result = run_genkit("sample", "--plugin", "vae", "-n", "2", "--out", "p", "--no-progress",
                        cwd=work)
    assert_one_line_error(result, notice_ok=True)
    assert_nothing_written(before, snapshot(work))


def test_1_overwrite_still_replaces_genkits_own_samples(ckpt, work):
    """The control: --overwrite of a folder genkit's own run records is still allowed."""
    import genkit

    genkit.load(ckpt, device="cpu").sample_to(work / "q", n=2, seed=0, progress=False)
    first = (work / "q" / "000000.png").read_bytes()
    result = run_genkit("sample", "--checkpoint", "ck", "-n", "3", "--seed", "1", "--out", "q",
                        "--overwrite", "--no-progress", cwd=work)
    assert_no_traceback(result)
    assert result.code == 0, result.describe()
    names = sorted(p.name for p in (work / "q").iterdir() if not p.name.startswith("."))
    assert names == ["000000.png", "000001.png", "000002.png", "grid.png", "manifest.jsonl",
                     "run.json"]
    assert (work / "q" / "000000.png").read_bytes() != first


# ------------------------------------------------------------------------------ 2
def _flip_bytes(ck: Path, models: dict) -> None:
    file = ck / WEIGHT
    data = bytearray(file.read_bytes())
    for i in range(len(data) - 64, len(data)):  # the tensor data, not the header
        data[i] ^= 0xFF
    file.write_bytes(bytes(data))


def _dtype_f32_to_i32(ck: Path, models: dict) -> None:
    file = ck / WEIGHT
    data = file.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = data[8:8 + length]
    assert b'"F32"' in header
    header = header.replace(b'"F32"', b'"I32"', 1)  # same length: the size stays the same
    file.write_bytes(data[:8] + header + data[8 + length:])


def _int64_with_matching_manifest(ck: Path, models: dict) -> None:
    """int64 weights, with genkit.json updated to match them (sizes and hashes agree):
    only a check of dtypes against the model can catch this."""
    import torch
    from safetensors.torch import load_file, save_file

    file = ck / WEIGHT
    tensors = {k: v.round().to(torch.int64) for k, v in load_file(file).items()}
    save_file(tensors, str(file), metadata={"format": "pt"})
    raw = file.read_bytes()

    def change(manifest):
        manifest["weights"][WEIGHT] = {"bytes": len(raw),
                                       "sha256": hashlib.sha256(raw).hexdigest()}

    edit_json(ck / "genkit.json", change)


def _empty_weights(ck: Path, models: dict) -> None:
    edit_json(ck / "genkit.json", lambda m: m.update(weights={}))


def _symlink_to_other_model(ck: Path, models: dict) -> None:
    (ck / WEIGHT).unlink()
    os.symlink(models["b"] / WEIGHT, ck / WEIGHT)


def _other_model_copied_in(ck: Path, models: dict) -> None:
    for name in ("encoder", "decoder"):
        shutil.copyfile(models["b"] / name / "model.safetensors", ck / name / "model.safetensors")


TAMPERING = {
    "same_size_bit_flips": _flip_bytes,
    "header_dtype_F32_to_I32": _dtype_f32_to_i32,
    "int64_weights_manifest_updated": _int64_with_matching_manifest,
    "weights_empty_in_genkit_json": _empty_weights,
    "symlink_to_another_models_weights": _symlink_to_other_model,
    "another_models_weights_copied_in": _other_model_copied_in,
}


@pytest.mark.parametrize("tamper", list(TAMPERING))
def test_2_tampered_weights_are_refused(models, ckpt, work, tamper):
    """Weights that do not match what genkit.json records (or the model) never load."""
    TAMPERING[tamper](ckpt, models)
    before = snapshot(work)
    result = run_genkit("sample", "--checkpoint", "ck", "-n", "2", "--out", "o", "--no-progress",
                        cwd=work)
    assert_one_line_error(result)
    assert_nothing_written(before, snapshot(work), "o")


def test_2_another_models_weights_never_mix_into_one_output_folder(models, ckpt, work):
    """Samples 0-1 in o/ came from model a; a's checkpoint now holds b's weights (same
    size, genkit.json untouched). Continuing o/ to 4 samples must be refused, or else o/
    must hold the samples of one model only."""
    import numpy as np
    from PIL import Image

    import genkit

    out = copy_tree(models["samples_a"], work / "o")
    _other_model_copied_in(ckpt, models)
    before = snapshot(work)
    result = run_genkit("sample", "--checkpoint", "ck", "-n", "4", "--out", "o", "--no-progress",
                        cwd=work)
    assert_no_traceback(result)
    if result.code != 0:
        assert_one_line_error(result)
        assert_nothing_written(before, snapshot(work), "o")
        return
    files = [np.asarray(Image.open(out / f"{i:06d}.png")) for i in range(4)]
    one_model = []
    for name in ("a", "b"):
        reference = genkit.load(models[name], device="cpu").sample(4, seed=0)
        one_model.append(all(np.array_equal(f, np.asarray(r)) for f, r in zip(files, reference)))
    assert any(one_model), "o/ now mixes samples of two models"


# ------------------------------------------------------------------------------ 3
def _outside_file(work: Path) -> Path:
    secret = work / "secret.bin"
    secret.write_bytes(b"s" * SECRET_SIZE)
    return secret


@pytest.mark.parametrize("how", ["relative", "absolute", "symlink"])
@pytest.mark.parametrize("size", ["right_size", "wrong_size"])
def test_3_paths_in_genkit_json_never_escape_the_checkpoint(ckpt, work, how, size):
    """A weight path like ../../etc/passwd, /etc/passwd or a link out of the checkpoint is
    refused, and the refusal never tells the outside file's size."""
    secret = _outside_file(work)
    if how == "relative":
        name = os.path.relpath(secret, ckpt)  # ../secret.bin
    elif how == "absolute":
        name = str(secret)
    else:
        name = "extra.safetensors"
        os.symlink(secret, ckpt / name)
    entry = ({"bytes": SECRET_SIZE, "sha256": hashlib.sha256(secret.read_bytes()).hexdigest()}
             if size == "right_size" else {"bytes": 100, "sha256": "0" * 64})
    edit_json(ckpt / "genkit.json", lambda m: m["weights"].update({name: entry}))
    before = snapshot(work)
    result = run_genkit("info", "ck", cwd=work)
    line = assert_one_line_error(result)
    assert str(SECRET_SIZE) not in result.stderr + result.stdout, line
    assert_nothing_written(before, snapshot(work))


def test_3_etc_passwd_named_by_a_checkpoint_is_refused_by_sample(ckpt, work):
    """The issue's own case: "../../etc/passwd"-style and absolute paths, with the right
    byte count, must not let `genkit sample` load the checkpoint."""
    target = Path("/etc/passwd")
    size = target.stat().st_size
    entries = {os.path.relpath(target, ckpt): {"bytes": size}, str(target): {"bytes": size}}
    edit_json(ckpt / "genkit.json", lambda m: m["weights"].update(entries))
    before = snapshot(work)
    result = run_genkit("sample", "--checkpoint", "ck", "-n", "1", "--out", "o", "--no-progress",
                        cwd=work)
    assert_one_line_error(result)
    assert str(size) not in result.stderr
    assert_nothing_written(before, snapshot(work), "o")


# ------------------------------------------------------------------------------ 4
HOST_PROGRAM = """
import sys
sys.argv = ["host-program", "--config", "settings.toml"]  # the host's own arguments
from genkit.cli import main
main({argv!r})
"""


def test_4_cli_main_relaunches_training_children_with_argv(work):
    """genkit.cli.main(argv) with --num-processes 2 from a program whose sys.argv differs:
    the children run argv (plugin, seed, --out), not the host's sys.argv."""
    argv = ["train", "--plugin", "vae", "--out", str(work / "r"), "--steps", "2", "--seed", "3",
            *TINY_VAE_SETS, *QUICK_TRAIN, "--num-processes", "2"]
    before = snapshot(work)
    result = run_python(HOST_PROGRAM.format(argv=argv), cwd=work, timeout=300)
    assert_no_traceback(result)
    assert result.code == 0, result.describe()
    manifest = json.loads((work / "r" / "model" / "genkit.json").read_text())
    assert manifest["generator"] == "vae"
    assert manifest["training"]["steps"] == 2
    assert manifest["training"]["seed"] == 3
    assert manifest["training"]["num_processes"] == 2
    assert_changes_only_under(before, snapshot(work), "r")


def test_4_cli_main_relaunches_sampling_children_with_argv(ckpt, work):
    argv = ["sample", "--checkpoint", str(ckpt), "-n", "4", "--batch-size", "1", "--seed", "5",
            "--out", str(work / "o"), "--no-progress", "--num-processes", "2"]
    before = snapshot(work)
    result = run_python(HOST_PROGRAM.format(argv=argv), cwd=work, timeout=300)
    assert_no_traceback(result)
    assert result.code == 0, result.describe()
    run = json.loads((work / "o" / "run.json").read_text())
    assert run["seed"] == 5
    rows = [json.loads(line) for line in (work / "o" / "manifest.jsonl").read_text().splitlines()]
    assert sorted(r["index"] for r in rows) == [0, 1, 2, 3]
    assert_changes_only_under(before, snapshot(work), "o")


# ------------------------------------------------------------------------------ 5
def test_5_resume_with_a_new_lr_takes_effect_or_is_refused(run_copy, work):
    """`--resume --lr X`: X is used (and recorded) from the resume point on, or the
    option is refused with one line and the run is left as it was."""
    new_lr = 0.0005
    before = snapshot(work)
    result = run_genkit("train", "--out", "run", "--resume", "--steps", "4", "--lr", str(new_lr),
                        "--batch-size", "8", "--log-every", "1", "--log-with", "none",
                        "--no-progress", "--device", "cpu", cwd=work)
    assert_no_traceback(result)
    if result.code != 0:
        assert_one_line_error(result, "--lr")
        assert_nothing_written(before, snapshot(work), "run")
        return
    resumed = [row for row in _metrics(run_copy) if "loss" in row and row["step"] > 2]
    assert resumed, "no metrics were logged after the resume point"
    assert all(row["lr"] == pytest.approx(new_lr) for row in resumed), \
        f"--lr {new_lr} was ignored on resume: logged lr {[row['lr'] for row in resumed]}"
    manifest = json.loads((run_copy / "model" / "genkit.json").read_text())
    assert manifest["training"]["lr"] == pytest.approx(new_lr)


# ------------------------------------------------------------------------------ 6
def test_6_children_die_with_a_killed_multi_process_parent(work):
    """kill -9 of `genkit train --num-processes 2`: its children stop too."""
    args = ["train", "--plugin", "vae", "--out", "run", "--steps", "1000000",
            "--checkpoint-every", "20", "--keep", "2", "--log-every", "1", *TINY_VAE_SETS,
            *QUICK_TRAIN, "--num-processes", "2"]
    with background(*args, cwd=work) as parent:
        started = wait_for(lambda: len(_metrics(work / "run")) >= 3 or parent.proc.poll() is not None,
                           timeout=180)
        assert started and parent.proc.poll() is None, \
            f"training did not start (exit {parent.proc.poll()}):\n{parent.stderr[-3000:]}"
        family = parent.descendants()
        assert len(family) >= 2, "expected child processes under --num-processes 2"
        os.kill(parent.pid, signal.SIGKILL)
        parent.proc.wait(timeout=10)
        wait_for(lambda: not any(alive(pid) for pid in family), timeout=15)
        survivors = [pid for pid in family if alive(pid)]
        checkpoints = len(list((work / "run" / "checkpoints").glob("step-*")))
        lines = len(_metrics(work / "run"))
        time.sleep(2)
        grew = len(_metrics(work / "run")) - lines
        parent.kill_all(family)  # clean up whatever is left (our own processes only)
    assert not survivors, (f"{len(survivors)} of {len(family)} child processes still run 15 s "
                           f"after the parent was killed (metrics grew by {grew} lines in 2 s; "
                           f"{checkpoints} checkpoints)")


# ------------------------------------------------------------------------------ 7
def _manifest_started(out: Path) -> bool:
    file = out / "manifest.jsonl"
    return file.exists() and file.stat().st_size > 0


def test_7_a_second_sampler_on_a_busy_out_is_refused_naming_the_holder(ckpt, work):
    holder_args = ["sample", "--checkpoint", "ck", "-n", "1000000", "--batch-size", "1",
                   "--out", "o", "--no-progress"]
    with background(*holder_args, cwd=work) as holder:
        assert wait_for(lambda: _manifest_started(work / "o") or holder.proc.poll() is not None,
                        timeout=120), holder.stderr
        assert holder.proc.poll() is None, f"the first sampler ended:\n{holder.stderr[-3000:]}"
        result = run_genkit("sample", "--checkpoint", "ck", "-n", "8", "--batch-size", "1",
                            "--out", "o", "--no-progress", cwd=work, timeout=120)
        holder_still_running = holder.proc.poll() is None
    assert_one_line_error(result, str(holder.pid))
    assert holder_still_running, "the first sampler did not survive the second one"


def test_7_a_trainer_on_a_sampler_s_busy_out_is_refused_naming_the_holder(ckpt, work):
    holder_args = ["sample", "--checkpoint", "ck", "-n", "1000000", "--batch-size", "1",
                   "--out", "o", "--no-progress"]
    with background(*holder_args, cwd=work) as holder:
        assert wait_for(lambda: _manifest_started(work / "o") or holder.proc.poll() is not None,
                        timeout=120), holder.stderr
        assert holder.proc.poll() is None, f"the sampler ended:\n{holder.stderr[-3000:]}"
        result = run_genkit("train", "--plugin", "vae", "--out", "o", "--steps", "2",
                            *TINY_VAE_SETS, *QUICK_TRAIN, cwd=work, timeout=180)
    assert_one_line_error(result, str(holder.pid))
    for name in ("checkpoints", "model", "metrics.jsonl"):
        assert not (work / "o" / name).exists(), f"the refused trainer wrote o/{name}"


# ------------------------------------------------------------------------------ 8
RAISE_AT_IMPORT = {
    "SystemExit_7": "raise SystemExit(7)\n",
    "SystemExit_0": "raise SystemExit(0)\n",
    "SystemExit_message": "raise SystemExit('plugin says goodbye')\n",
    "BaseException_subclass": "class Odd(BaseException):\n    pass\nraise Odd('odd')\n",
    "GeneratorExit": "raise GeneratorExit\n",
}


@pytest.mark.parametrize("case", list(RAISE_AT_IMPORT))
def test_8_a_plugin_raising_any_exception_at_import_is_isolated(ckpt, work, tmp_path, case):
    site = make_plugin(tmp_path / "site", "exiter", RAISE_AT_IMPORT[case])
    listed = run_genkit("plugins", "--json", cwd=work, python_path=[site])
    assert_no_traceback(listed)
    assert listed.code == 0, listed.describe()
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert rows["exiter"]["status"].startswith("failed"), rows["exiter"]
    assert all(rows[name]["status"] == "ok" for name in ("vae", "gpt", "diffusion", "gan"))
    info = run_genkit("info", "ck", cwd=work, python_path=[site])  # any other command
    assert_no_traceback(info)
    assert info.code == 0, info.describe()


PRINTING = {
    "print_at_import": "print('hello from a plugin at import')\nprint('[not json')\n",
    "print_in_hook": """
        from genkit import hookimpl

        @hookimpl
        def register_generators(register):
            print('{"oops": "a plugin printed to stdout"}')
            register("printer", target="genkit_hostile_printer:Nothing", modality="image")
    """,
    "write_to_fd_1": "import os\nos.write(1, b'raw bytes on fd 1\\n')\n",
}


@pytest.mark.parametrize("case", list(PRINTING))
def test_8_a_plugin_printing_never_breaks_plugins_json(work, tmp_path, case):
    site = make_plugin(tmp_path / "site", "printer", PRINTING[case])
    result = run_genkit("plugins", "--json", cwd=work, python_path=[site])
    assert_no_traceback(result)
    assert result.code == 0, result.describe()
    rows = {row["name"]: row for row in json.loads(result.stdout)}  # stdout is JSON alone
    assert "printer" in rows
    assert rows["vae"]["status"] == "ok"


RAISING_SOURCE = """
from genkit import hookimpl


@hookimpl
def register_data_sources(register):
    register("boom", loader="genkit_hostile_boom:load", modality="image",
             summary="a data source that raises")


def load(argument, split="train", **options):
    raise RuntimeError("kaboom\\nsecond line of the plugin's message")
"""


def test_8_a_plugin_data_source_that_raises_is_one_line(work, tmp_path):
    site = make_plugin(tmp_path / "site", "boom", RAISING_SOURCE)
    before = snapshot(work)
    result = run_genkit("train", "--plugin", "vae", "--data", "boom", "--out", "r", "--steps", "1",
                        *TINY_VAE_SETS, *QUICK_TRAIN, cwd=work, python_path=[site])
    assert_one_line_error(result, "boom")
    assert_nothing_written(before, snapshot(work), "r")


# ------------------------------------------------------------------------------ 9
def _limit_memory() -> None:  # a runaway plan must not take the shared machine down
    limit = 4 << 30
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def test_9_an_absurd_n_fails_fast_or_is_planned_lazily(ckpt, work):
    """`genkit sample -n 100000000000`: one line within seconds, or samples start coming
    (no index list of the whole run built up front)."""
    import subprocess

    before = snapshot(work)
    start = time.monotonic()
    log = work.parent / "n.err"
    with open(log, "w") as err:
        proc = subprocess.Popen([*genkit_command(), "sample", "--checkpoint", "ck", "-n",
                                 "100000000000", "--out", "o", "--no-progress"], cwd=work,
                                stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL,
                                env=child_env(), preexec_fn=_limit_memory)
    try:
        try:
            code = proc.wait(timeout=25)
        except subprocess.TimeoutExpired:
            code = None
        seconds = time.monotonic() - start
        writing = _manifest_started(work / "o")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = log.read_text(errors="replace")
    assert "Traceback" not in stderr and "MemoryError" not in stderr, stderr[-3000:]
    if code is None:
        assert writing, ("after 25 s `genkit sample -n 100000000000` had written no sample: "
                         "it is still planning the whole run")
        return
    assert_one_line_error(Result(code, "", stderr, seconds, ["sample", "-n", "1e11"]))
    assert seconds < 20, f"took {seconds:.0f} s to refuse"
    assert_nothing_written(before, snapshot(work), "o")
