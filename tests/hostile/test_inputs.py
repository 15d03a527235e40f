"""Every class of bad input in issue 13 ("Classes that must give one clear line").

Each case: exit status 2 (or 0 where the documented behaviour is a one-line warning),
exactly one non-empty line on stderr without a traceback, and nothing written, changed or
deleted outside what the run owns.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import struct
import zlib
from pathlib import Path

import pytest
from hostile_support import (
    QUICK_TRAIN,
    TINY_VAE,
    assert_changes_only_under,
    assert_no_traceback,
    assert_nothing_written,
    assert_one_line_error,
    background,
    edit_json,
    run_genkit,
    snapshot,
    stderr_lines,
    wait_for,
    write_png,
)

# A tiny unconditional VAE (folder data without sub-folders has no labels).
UNCONDITIONAL = ["--set", "image_size=8", "--set", "base_width=4", "--set", "latent_dim=2"]
TRAIN_FOLDER = ["train", "--plugin", "vae", "--data", "folder:images", "--out", "r", "--steps",
                "1", *UNCONDITIONAL, "--batch-size", "4", "--log-with", "none", "--no-progress",
                "--device", "cpu"]
RESUME = ["train", "--out", "run", "--resume", "--steps", "4", "--batch-size", "8",
          "--log-with", "none", "--no-progress", "--device", "cpu"]


# --------------------------------------------------------------------- image folders
def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def decompression_bomb(path: Path, side: int = 20000) -> Path:
    """A small PNG that decodes to side x side 1-bit pixels (400 M pixels for 20000): far
    past PIL's decompression-bomb limit, a few tens of kB on disk."""
    row = b"\x00" + b"\x00" * ((side + 7) // 8)
    comp = zlib.compressobj(9)
    body = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", body)
                     + _png_chunk(b"IEND", b""))
    return path


def _noise_png(size: int) -> bytes:
    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 256, (size, size), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buf, format="PNG")
    return buf.getvalue()


def _corrupt(path: Path) -> None:
    path.write_bytes(bytes(range(256)) * 3)


def _zero_byte(path: Path) -> None:
    path.write_bytes(b"")


def _truncated(path: Path) -> None:
    data = _noise_png(64)
    path.write_bytes(data[: len(data) * 6 // 10])


def _bomb(path: Path) -> None:
    decompression_bomb(path)


BAD_IMAGES = {"corrupt": _corrupt, "zero_byte": _zero_byte, "truncated": _truncated,
              "decompression_bomb": _bomb}


@pytest.mark.parametrize("kind", list(BAD_IMAGES))
def test_bad_image_in_a_folder_is_skipped_with_one_warning_or_refused(image_folder, work, kind):
    """Documented either way: skipped with one warning line naming the file (exit 0), or
    the run refused with one line naming the file (exit 2). Never a traceback."""
    bad = image_folder / f"bad_{kind}.png"
    BAD_IMAGES[kind](bad)
    before = snapshot(work)
    result = run_genkit(*TRAIN_FOLDER, cwd=work)
    assert_no_traceback(result)
    if result.code == 0:
        naming = [line for line in stderr_lines(result) if bad.name in line]
        assert len(naming) == 1, f"expected one warning naming {bad.name}:\n" + result.describe()
        assert_changes_only_under(before, snapshot(work), "r")
    else:
        assert_one_line_error(result, bad.name)
        assert_nothing_written(before, snapshot(work), "r")


def test_images_beside_class_sub_folders_are_one_line(work):
    for label in ("cats", "dogs"):
        for i in range(4):
            write_png(work / "images" / label / f"{i}.png", value=i)
    write_png(work / "images" / "stray.png", value=7)
    before = snapshot(work)
    result = run_genkit(*TRAIN_FOLDER, cwd=work)
    assert_one_line_error(result, "stray.png")
    assert_nothing_written(before, snapshot(work), "r")


# ------------------------------------------------------------------------ hf: sources
def _not_a_dataset(work: Path) -> str:
    folder = work / "thing"
    folder.mkdir()
    (folder / "notes.txt").write_text("not a data set\n")
    (folder / "config.json").write_text('{"model_type": "gpt2"}\n')
    return "hf:thing"


def _corrupt_parquet(work: Path) -> str:
    (work / "data.parquet").write_bytes(b"PAR1" + bytes(range(200)) + b"PAR1")
    return "hf:data.parquet"


HF_CASES = {"folder_that_is_not_a_dataset": _not_a_dataset, "corrupt_parquet": _corrupt_parquet}


@pytest.mark.parametrize("case", list(HF_CASES))
def test_hf_source_that_is_not_a_dataset_is_one_line(work, case):
    source = HF_CASES[case](work)
    before = snapshot(work)
    result = run_genkit("train", "--plugin", "vae", "--data", source, "--out", "r", "--steps", "1",
                        *UNCONDITIONAL, *QUICK_TRAIN, cwd=work)
    assert_one_line_error(result)
    assert_nothing_written(before, snapshot(work), "r")


# ------------------------------------------------------------------ non-UTF-8 files
def test_non_utf8_labels_file_is_one_line(ckpt, work):
    (work / "labels.txt").write_bytes(b"1\n\xff\xfe2\n3\n")
    before = snapshot(work)
    result = run_genkit("sample", "--checkpoint", "ck", "--labels-file", "labels.txt", "-n", "3",
                        "--out", "o", "--no-progress", cwd=work)
    assert_one_line_error(result, "labels.txt")
    assert_nothing_written(before, snapshot(work), "o")


def test_non_utf8_prompts_file_is_one_line(work):
    (work / "prompts.txt").write_bytes(b"The return statement\n\xc3\x28 broken\n")
    before = snapshot(work)
    result = run_genkit("sample", "--plugin", "gpt", "--prompts", "prompts.txt", "-n", "2",
                        "--max-new-tokens", "4", "--out", "o", "--no-progress", cwd=work)
    assert_one_line_error(result, "prompts.txt", notice_ok=True)
    assert_nothing_written(before, snapshot(work), "o")


# ------------------------------------------------------------------ genkit.json types
def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


MANIFEST_CASES = {  # read by `genkit info`
    "weights_is_a_list": lambda m: m.update(weights=[]),
    "weights_entry_is_a_number": lambda m: m["weights"].update({next(iter(m["weights"])): 5}),
    "weights_bytes_is_a_string": lambda m: m["weights"][next(iter(m["weights"]))].update(
        bytes="many"),
    "weights_key_is_empty": lambda m: m["weights"].update({"": {"bytes": 0}}),
    "generator_is_a_number": lambda m: m.update(generator=5),
    "generator_is_a_list": lambda m: m.update(generator=["vae"]),
    "training_is_a_string": lambda m: m.update(training="a lot"),
    "plugin_is_a_string": lambda m: m.update(plugin="vae"),
    "versions_is_a_list": lambda m: m.update(versions=[]),
    "config_is_a_string": lambda m: m.update(config="image_size=8"),
    "config_is_a_list": lambda m: m.update(config=[["image_size", 8]]),
    "top_level_is_a_list": lambda m: [m],
}


@pytest.mark.parametrize("case", list(MANIFEST_CASES))
def test_genkit_json_with_wrong_types_is_one_line(ckpt, work, case):
    edit_json(ckpt / "genkit.json", MANIFEST_CASES[case])
    before = snapshot(work)
    result = run_genkit("info", "ck", cwd=work)
    assert_one_line_error(result)
    assert_nothing_written(before, snapshot(work))


def test_genkit_json_with_absurd_nesting_is_one_line(ckpt, work):
    text = (ckpt / "genkit.json").read_text()
    (ckpt / "genkit.json").write_text(text.replace('"config": {', '"deep": '
                                                   + _nested(10_000) + ', "config": {', 1))
    before = snapshot(work)
    result = run_genkit("info", "ck", cwd=work)
    assert_one_line_error(result)
    assert_nothing_written(before, snapshot(work))


CONFIG_CASES = {  # read when the model is built (`genkit sample`)
    "config_is_a_list": lambda m: m.update(config=[8, 4, 2]),
    "config_is_a_string": lambda m: m.update(config="image_size=8"),
    "config_value_is_a_dict": lambda m: m["config"].update(image_size={"value": 8}),
    "config_value_is_nested_lists": lambda m: m["config"].update(latent_dim=[[2]]),
}


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_genkit_json_config_with_wrong_types_is_one_line(ckpt, work, case):
    edit_json(ckpt / "genkit.json", CONFIG_CASES[case])
    before = snapshot(work)
    result = run_genkit("sample", "--checkpoint", "ck", "-n", "1", "--out", "o", "--no-progress",
                        cwd=work)
    assert_one_line_error(result)
    assert_nothing_written(before, snapshot(work), "o")


@pytest.mark.parametrize("version", [-1, "missing", True, "1", 1.5, None])
def test_format_version_negative_missing_or_not_an_integer_is_one_line(ckpt, work, version):
    def change(manifest):
        if version == "missing":
            del manifest["format_version"]
        else:
            manifest["format_version"] = version

    edit_json(ckpt / "genkit.json", change)
    before = snapshot(work)
    result = run_genkit("info", "ck", cwd=work)
    assert_one_line_error(result)
    assert_nothing_written(before, snapshot(work))


# ------------------------------------------------------------- damaged training state
def _state_dir(run: Path) -> Path:
    newest = sorted((run / "checkpoints").glob("step-*"))[-1]
    return newest / "training_state"


def _truncate_online(run: Path) -> None:
    file = _state_dir(run) / "online.safetensors"
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2])


def _garbage_online(run: Path) -> None:
    file = _state_dir(run) / "online.safetensors"
    file.write_bytes(bytes((i * 37 + 11) % 256 for i in range(file.stat().st_size)))


def _missing_optimizer(run: Path) -> None:
    for file in _state_dir(run).glob("optimizer-*.safetensors"):
        file.unlink()


def _online_missing_a_key(run: Path) -> None:
    from safetensors.torch import load_file, save_file

    file = _state_dir(run) / "online.safetensors"
    tensors = load_file(file)
    tensors.pop(sorted(tensors)[0])
    save_file(tensors, str(file))


DAMAGE = {"truncated_online_weights": _truncate_online, "garbage_online_weights": _garbage_online,
          "missing_optimizer_file": _missing_optimizer,
          "online_weights_missing_a_key": _online_missing_a_key}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_training_state_on_resume_is_one_line(run_copy, work, damage):
    DAMAGE[damage](run_copy)
    before = snapshot(work)
    result = run_genkit(*RESUME, cwd=work)
    assert_one_line_error(result)
    assert_nothing_written(before, snapshot(work), "run")


# ------------------------------------------------------------------- --set and options
def test_set_size_for_folder_data_works_or_is_one_line(image_folder, work):
    before = snapshot(work)
    result = run_genkit(*TRAIN_FOLDER, "--set", "size=8", cwd=work)
    assert_no_traceback(result)
    if result.code == 0:
        assert (work / "r" / "model" / "genkit.json").is_file()
        assert_changes_only_under(before, snapshot(work), "r")
    else:
        assert_one_line_error(result, "size")
        assert_nothing_written(before, snapshot(work), "r")


@pytest.mark.parametrize("value", ["abc"])
def test_set_size_with_a_bad_value_is_one_line(image_folder, work, value):
    before = snapshot(work)
    result = run_genkit(*TRAIN_FOLDER, "--set", f"size={value}", cwd=work)
    assert_one_line_error(result, "size")
    assert_nothing_written(before, snapshot(work), "r")


@pytest.mark.parametrize("channels", ["2", "4"])
def test_set_channels_the_model_cannot_output_is_one_line(work, channels):
    before = snapshot(work)
    result = run_genkit("train", "--plugin", "vae", "--out", "r", "--steps", "1", *UNCONDITIONAL,
                        "--set", f"channels={channels}", *QUICK_TRAIN, cwd=work)
    assert_one_line_error(result, "channels")
    assert_nothing_written(before, snapshot(work), "r")


@pytest.mark.parametrize("processes", ["0", "-1"])
@pytest.mark.parametrize("command", ["train", "sample"])
def test_num_processes_below_one_is_one_line(ckpt, work, command, processes):
    if command == "train":
        args = ["train", "--plugin", "vae", "--out", "r", "--steps", "1", *UNCONDITIONAL,
                *QUICK_TRAIN]
    else:
        args = ["sample", "--checkpoint", "ck", "-n", "2", "--out", "r", "--no-progress"]
    before = snapshot(work)
    result = run_genkit(*args, "--num-processes", processes, cwd=work)
    assert_one_line_error(result, "--num-processes")
    assert_nothing_written(before, snapshot(work), "r")


USAGE_ERRORS = {
    "unknown_option": ["train", "--plugin", "vae", "--out", "r", "--bogus"],
    "missing_value": ["train", "--plugin", "vae", "--out"],
    "unknown_command": ["trian", "--plugin", "vae"],
    "wrong_type": ["train", "--plugin", "vae", "--out", "r", "--steps", "many"],
    "bad_choice": ["sample", "--plugin", "vae", "--format", "gif"],
    "missing_argument": ["info"],
    "missing_required_option": ["train", "--plugin", "vae"],
}


@pytest.mark.parametrize("case", list(USAGE_ERRORS))
def test_click_usage_errors_are_one_line(work, case):
    before = snapshot(work)
    result = run_genkit(*USAGE_ERRORS[case], cwd=work)
    assert_one_line_error(result)
    assert_nothing_written(before, snapshot(work))


# ------------------------------------------------------------ what a kill leaves behind
def test_leftover_tmp_directories_of_a_killed_training_run_are_cleaned(run_copy, work):
    """A kill during a checkpoint save leaves `.NAME.tmp-XXXXXXXX` directories; the next
    start removes them (and nothing else)."""
    leftovers = [run_copy / "checkpoints" / ".step-00000003.tmp-1a2b3c4d",
                 run_copy / ".model.tmp-5e6f7a8b"]
    for tmp in leftovers:
        (tmp / "training_state").mkdir(parents=True)
        (tmp / "genkit.json").write_text('{"format": "genkit-checkpoint", "form')
        (tmp / "training_state" / "online.safetensors").write_bytes(b"\x00" * 100)
    before = snapshot(work)
    result = run_genkit("train", "--out", "run", "--resume", "--steps", "3", "--batch-size", "8",
                        "--log-with", "none", "--no-progress", "--device", "cpu", cwd=work)
    assert_no_traceback(result)
    assert result.code == 0, result.describe()
    left = [str(p.relative_to(work)) for p in leftovers if p.exists()]
    assert not left, f"leftover temporary directories were not cleaned: {left}"
    assert (run_copy / "checkpoints" / "step-00000003" / "genkit.json").is_file()
    assert_changes_only_under(before, snapshot(work), "run")


def test_leftover_tmp_files_of_a_killed_sampler_are_cleaned(models, ckpt, work):
    out = shutil.copytree(models["samples_a"], work / "o")
    leftovers = [out / ".000002.png.tmp-1a2b3c4d", out / ".grid.png.tmp-deadbeef",
                 out / ".manifest.jsonl.tmp-0badf00d"]
    for tmp in leftovers:
        tmp.write_bytes(b"\x89PNG half")
    before = snapshot(work)
    result = run_genkit("sample", "--checkpoint", "ck", "-n", "3", "--out", "o", "--no-progress",
                        cwd=work)
    assert_no_traceback(result)
    assert result.code == 0, result.describe()
    assert not [p.name for p in leftovers if p.exists()]
    assert not list(out.glob("*.tmp-*")) and not list(out.glob(".*.tmp-*"))
    assert_changes_only_under(before, snapshot(work), "o")


def _loss_steps(run: Path) -> list[int]:
    steps = []
    for line in (run / "metrics.jsonl").read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by the kill
        if "loss" in row:
            steps.append(int(row["step"]))
    return steps


def _complete_checkpoints(run: Path) -> list[Path]:
    return sorted(p for p in (run / "checkpoints").glob("step-*") if (p / "genkit.json").is_file())


def test_metrics_have_no_duplicate_steps_after_a_kill_and_resume(work):
    run = work / "run"
    args = ["train", "--plugin", "vae", "--out", "run", "--steps", "1000000",
            "--checkpoint-every", "25", "--keep", "2", "--log-every", "1",
            *[a for k, v in TINY_VAE.items() for a in ("--set", f"{k}={v}")], *QUICK_TRAIN]

    def ready() -> bool:
        if not (run / "checkpoints").is_dir() or not (run / "metrics.jsonl").exists():
            return False
        done = _complete_checkpoints(run)
        return bool(done) and max(_loss_steps(run), default=0) > int(done[-1].name[5:]) + 2

    with background(*args, cwd=work) as trainer:
        assert wait_for(lambda: ready() or trainer.proc.poll() is not None, timeout=120), \
            trainer.stderr[-3000:]
        assert trainer.proc.poll() is None, trainer.stderr[-3000:]
        os.kill(trainer.pid, signal.SIGKILL)
        trainer.proc.wait(timeout=10)
    done = _complete_checkpoints(run)
    if max(_loss_steps(run)) <= int(done[-1].name[5:]):  # killed right after a save:
        shutil.rmtree(done[-1])  # as if killed just before it
        done = done[:-1]
    newest = int(done[-1].name[5:])
    assert max(_loss_steps(run)) > newest  # metrics past the resume point exist
    result = run_genkit("train", "--out", "run", "--resume", "--steps", str(newest + 5),
                        "--batch-size", "8", "--log-every", "1", "--log-with", "none",
                        "--no-progress", "--device", "cpu", cwd=work)
    assert_no_traceback(result)
    assert result.code == 0, result.describe()
    steps = _loss_steps(run)
    duplicates = sorted({s for s in steps if steps.count(s) > 1})
    assert not duplicates, f"metrics.jsonl logs steps {duplicates[:10]} more than once"
    assert max(steps) == newest + 5
