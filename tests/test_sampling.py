"""Batch generation: determinism by index, resume after a kill, sharding, refusals, errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

import genkit
from genkit.errors import SamplingError
from genkit.sample.writer import read_manifest_records


@pytest.fixture
def toy(toy_registry, tmp_path):
    g = genkit.create("toy", num_classes=10)
    g.train("digits", steps=20, progress=False, log_with="none")
    return g


def _pixels(directory):
    return {p.name: np.asarray(Image.open(p)) for p in sorted(directory.glob("*.png"))
            if p.name != "grid.png"}


def test_sample_i_does_not_depend_on_batch_size(toy):
    alone = [toy.sample(1, seed=5)[0]] + [s.output for s in toy.iter_samples(6, seed=5, batch_size=1)][1:]
    batched = toy.sample(6, seed=5, batch_size=4)
    for a, b in zip(alone, batched):
        diff = np.abs(np.asarray(a, dtype=int) - np.asarray(b, dtype=int)).max()
        assert diff <= 2
    assert not np.array_equal(np.asarray(batched[0]), np.asarray(batched[1]))
    other_seed = toy.sample(6, seed=6, batch_size=4)
    assert not np.array_equal(np.asarray(batched[0]), np.asarray(other_seed[0]))


def test_sample_to_writes_files_manifest_and_grid(toy, tmp_path):
    report = toy.sample_to(tmp_path / "out", n=10, batch_size=4, seed=1, labels=[3, 7],
                           grid=tmp_path / "out" / "grid.png", progress=False)
    assert report.written == 10 and report.skipped == 0
    records = read_manifest_records(tmp_path / "out")
    assert sorted(records) == list(range(10))
    assert [records[i]["label"] for i in range(4)] == [3, 7, 3, 7]
    assert len({r["checkpoint"] for r in records.values()}) == 1
    assert len({r["seed"] for r in records.values()}) == 10
    assert len(_pixels(tmp_path / "out")) == 10
    assert Image.open(tmp_path / "out" / "grid.png").size[0] > 8 * 4
    again = toy.sample_to(tmp_path / "out", n=10, batch_size=4, seed=1, labels=[3, 7],
                          progress=False)
    assert again.written == 0 and again.skipped == 10


def test_per_condition_spreads_blocks(toy, tmp_path):
    toy.sample_to(tmp_path / "o", labels="0,1,2", per_condition=2, progress=False, format="npy")
    records = read_manifest_records(tmp_path / "o")
    assert [records[i]["label"] for i in range(6)] == [0, 0, 1, 1, 2, 2]
    assert np.load(tmp_path / "o" / "000000.npy").shape == (8, 8)


def test_refuses_a_directory_of_another_run(toy, tmp_path):
    toy.sample_to(tmp_path / "o", n=4, seed=1, progress=False)
    with pytest.raises(SamplingError, match="different run .*seed.*--overwrite"):
        toy.sample_to(tmp_path / "o", n=4, seed=2, progress=False)
    report = toy.sample_to(tmp_path / "o", n=4, seed=2, overwrite=True, progress=False)
    assert report.written == 4


@pytest.mark.parametrize("kwargs, message", [
    ({"label": 12}, "label 12 is out of range"),
    ({"prompt": "hi"}, "does not take a prompt"),
    ({"n": 0}, "-n must be at least 1"),
    ({"steps": 0}, "steps must be at least 1"),
    ({"temperature": 1.0}, "unknown toy sampling option key 'temperature'"),
    ({"format": "txt"}, "does not fit image samples"),
    ({"batch_size": 0}, "--batch-size must be at least 1"),
])
def test_bad_sampling_input(toy, tmp_path, kwargs, message):
    kwargs.setdefault("n", 2)
    with pytest.raises((SamplingError, genkit.ConfigError), match=message):
        toy.sample_to(tmp_path / "o", progress=False, **kwargs)


def test_unwritable_output_is_a_clear_error_and_leaves_nothing(toy, tmp_path, monkeypatch):
    import genkit.sample.writer as sampling

    calls = {"n": 0}
    real = sampling.atomic_write_bytes

    def disk_full(path, data):
        calls["n"] += 1
        if calls["n"] > 3:
            raise OSError(28, "No space left on device")
        real(path, data)

    monkeypatch.setattr(sampling, "atomic_write_bytes", disk_full)
    with pytest.raises(SamplingError, match="No space left on device.*rerun the same command"):
        toy.sample_to(tmp_path / "o", n=8, batch_size=4, progress=False)
    assert not list((tmp_path / "o").glob(".*tmp*"))
    assert read_manifest_records(tmp_path / "o") == {}  # the failed batch is not recorded
    monkeypatch.undo()
    report = toy.sample_to(tmp_path / "o", n=8, batch_size=4, progress=False)
    assert report.written == 8


def _cli(env, *args, **kw):
    return subprocess.Popen([sys.executable, "-m", "genkit", "sample", *args], env=env,
                            stderr=subprocess.PIPE, stdout=subprocess.PIPE, **kw)


def test_killed_run_resumes_byte_identical(toy, toy_env, tmp_path):
    toy.save(tmp_path / "ckpt")
    args = ["--checkpoint", str(tmp_path / "ckpt"), "-n", "3000", "--batch-size", "50",
            "--seed", "4", "--no-progress", "--device", "cpu"]
    out = tmp_path / "killed"
    proc = _cli(toy_env, *args, "--out", str(out))
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if (out / "manifest.jsonl").exists() and len(read_manifest_records(out)) >= 100:
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(read_manifest_records(out))
    assert 0 < done < 3000, proc.stderr.read().decode()[-2000:]
    resumed = _cli(toy_env, *args, "--out", str(out))
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read().decode()[-2000:]
    straight = _cli(toy_env, *args, "--out", str(tmp_path / "straight"))
    assert straight.wait(timeout=300) == 0
    records = read_manifest_records(out)
    assert sorted(records) == list(range(3000))
    lines = (out / "manifest.jsonl").read_text().splitlines()
    assert len(lines) == 3000  # no duplicates
    a = {p.name: p.read_bytes() for p in out.glob("0*.png")}
    b = {p.name: p.read_bytes() for p in (tmp_path / "straight").glob("0*.png")}
    assert a == b
    assert not list(out.glob(".*.tmp-*"))  # no temp files left (the lock file stays)


def test_two_processes_equal_one(toy, toy_env, tmp_path):
    toy.save(tmp_path / "ckpt")
    args = ["--checkpoint", str(tmp_path / "ckpt"), "-n", "40", "--batch-size", "8",
            "--labels", "1,2", "--no-progress", "--device", "cpu"]
    two = _cli(toy_env, *args, "--out", str(tmp_path / "two"), "--num-processes", "2")
    assert two.wait(timeout=300) == 0, two.stderr.read().decode()[-2000:]
    one = _cli(toy_env, *args, "--out", str(tmp_path / "one"))
    assert one.wait(timeout=300) == 0
    assert _pixels(tmp_path / "two").keys() == _pixels(tmp_path / "one").keys()
    for name, pixels in _pixels(tmp_path / "two").items():
        assert np.abs(pixels.astype(int) - _pixels(tmp_path / "one")[name].astype(int)).max() <= 2
    merged = (tmp_path / "two" / "manifest.jsonl").read_text().splitlines()
    assert [json.loads(line)["index"] for line in merged] == list(range(40))
    assert not list((tmp_path / "two").glob("manifest.part-*"))


def test_manual_shards_union_equals_whole(toy, tmp_path):
    for i in range(3):
        toy.sample_to(tmp_path / "s", n=20, batch_size=4, shard=f"{i}/3", progress=False)
    final = toy.sample_to(tmp_path / "s", n=20, batch_size=4, progress=False)
    assert final.written == 0
    toy.sample_to(tmp_path / "whole", n=20, batch_size=4, progress=False)
    assert {k: v.tobytes() for k, v in _pixels(tmp_path / "s").items()} == \
        {k: v.tobytes() for k, v in _pixels(tmp_path / "whole").items()}


def test_accelerate_launch_shards_and_merges(toy, toy_env, tmp_path):
    toy.save(tmp_path / "ckpt")
    args = ["--checkpoint", str(tmp_path / "ckpt"), "-n", "24", "--batch-size", "4",
            "--no-progress", "--device", "cpu"]
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
              "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
              "--dynamo_backend", "no", "-m", "genkit", "sample"]
    result = subprocess.run([*launch, *args, "--out", str(tmp_path / "acc")], env=toy_env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    toy.sample_to(tmp_path / "one", n=24, batch_size=4, progress=False)
    assert {k: v.tobytes() for k, v in _pixels(tmp_path / "acc").items()} == \
        {k: v.tobytes() for k, v in _pixels(tmp_path / "one").items()}
    lines = (tmp_path / "acc" / "manifest.jsonl").read_text().splitlines()
    assert [json.loads(line)["index"] for line in lines] == list(range(24))
    assert not list((tmp_path / "acc").glob("manifest.part-*"))
