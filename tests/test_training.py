"""The training engine: loss goes down, exact resume after SIGKILL, EMA, guards, processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import genkit
from genkit.errors import ConfigError, TrainingError
from genkit.store.checkpoint import step_checkpoints

QUIET = {"progress": False, "log_with": "none"}


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_training_lowers_the_loss_and_writes_a_run(toy_registry, tmp_path):
    g = genkit.create("toy")
    report = g.train("digits", steps=60, batch_size=32, out=tmp_path / "run", log_every=10,
                     progress=False)
    assert report.steps == 60 and not report.interrupted
    assert report.final_loss < 0.8 * report.first_loss
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics][-1] == 60
    assert metrics[-1]["loss"] < metrics[0]["loss"]
    assert list((tmp_path / "run" / "logs").rglob("events.out.tfevents.*"))  # TensorBoard
    summary = json.loads((tmp_path / "run" / "model" / "genkit.json").read_text())["training"]
    assert summary["steps"] == 60 and summary["seed"] == 0 and summary["device"] == "cpu"
    assert "torch" in summary["versions"] and summary["data"] == "digits"
    assert genkit.load(tmp_path / "run").training_summary["steps"] == 60


def test_same_seed_same_weights_other_seed_differs(toy_registry):
    runs = []
    for seed in (0, 0, 1):
        g = genkit.create("toy")
        torch.manual_seed(123)  # the init is the plugin's; the engine controls training only
        g.build()
        g.train("digits", steps=10, seed=seed, **QUIET)
        runs.append(g.net[0].weight.detach().clone())
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])


def _final_weights(run: Path) -> dict[str, torch.Tensor]:
    ckpt = step_checkpoints(run)[-1]
    weights = load_file(str(ckpt / "net.safetensors"))  # EMA weights
    weights.update({f"online.{k}": v for k, v in
                    load_file(str(ckpt / "training_state" / "online.safetensors")).items()})
    return weights


def test_killed_run_resumes_bitwise(toy_registry, toy_env, tmp_path, one_thread):
    steps, every = 1500, 100
    args = ["--plugin", "toy", "--steps", str(steps), "--checkpoint-every", str(every),
            "--ema-decay", "0.99", "--lr-schedule", "cosine", "--warmup-steps", "50",
            "--log-with", "none", "--no-progress", "--device", "cpu"]
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "genkit", "train", "--out", str(killed), *args],
                            env=toy_env, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not step_checkpoints(killed) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    saved = step_checkpoints(killed)
    assert saved, proc.stderr.read().decode()[-2000:]
    last_saved = int(saved[-1].name.split("-")[1])
    assert last_saved < steps, "the run finished before it could be killed"

    g = genkit.create("toy")
    report = g.train(None, out=killed, resume=True, steps=steps, checkpoint_every=every,
                     ema_decay=0.99, lr_schedule="cosine", warmup_steps=50, device="cpu", **QUIET)
    assert report.start_step == last_saved and report.steps == steps

    straight = genkit.create("toy")
    straight.train(None, out=tmp_path / "straight", steps=steps, checkpoint_every=every,
                   ema_decay=0.99, lr_schedule="cosine", warmup_steps=50, device="cpu", **QUIET)
    a, b = _final_weights(killed), _final_weights(tmp_path / "straight")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_ema_is_saved_restored_and_used_for_sampling(toy_registry, tmp_path):
    g = genkit.create("toy")
    g.train("digits", steps=30, out=tmp_path / "run", ema_decay=0.9, **QUIET)
    assert g.ema is not None
    ckpt = step_checkpoints(tmp_path / "run")[-1]
    ema = load_file(str(ckpt / "training_state" / "ema-net.safetensors"))
    saved = load_file(str(ckpt / "net.safetensors"))
    online = g.net.state_dict()
    assert torch.equal(saved["0.weight"], ema["0.weight"])  # the checkpoint holds EMA weights
    assert not torch.equal(online["0.weight"], ema["0.weight"])  # ...which differ from online
    with g.sampling_weights():
        assert torch.equal(g.net[0].weight, ema["0.weight"])
    assert torch.equal(g.net[0].weight, online["0.weight"])  # restored afterwards
    state = json.loads((ckpt / "training_state" / "state.json").read_text())
    assert state["ema"]["net"]["optimization_step"] == 30


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(toy_registry, tmp_path, monkeypatch):
    g = genkit.create("toy")
    g.train("digits", steps=20, out=tmp_path / "run", checkpoint_every=10, **QUIET)
    good = step_checkpoints(tmp_path / "run")
    original = type(g).training_step

    def poisoned(self, batch, ctx):
        out = dict(original(self, batch, ctx))
        if ctx.step >= 25:
            out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(type(g), "training_step", poisoned)
    with pytest.raises(TrainingError, match=r"loss became nan at step .*last good checkpoint .*step-00000020"):
        g.train("digits", steps=40, out=tmp_path / "run", resume=True, checkpoint_every=10,
                log_every=5, **QUIET)
    assert step_checkpoints(tmp_path / "run") == good


@pytest.mark.parametrize("kwargs, error, message", [
    ({"steps": 0}, ConfigError, "--steps must be at least 1"),
    ({"steps": -3}, ConfigError, "--steps must be at least 1"),
    ({"batch_size": 5000}, TrainingError, "larger than the data set"),
    ({"precision": "fp16", "device": "cpu"}, genkit.DeviceError, "fp16 mixed precision needs a GPU"),
    ({"device": "cuda:7"}, genkit.DeviceError, "cuda"),
    ({"lr_schedule": "zigzag"}, ConfigError, "lr_schedule must be one of"),
    ({"bogus": 1}, ConfigError, "unknown training option key 'bogus'"),
    ({"log_with": "wandb"}, ConfigError, "needs the wandb package"),
])
def test_bad_training_input_fails_before_work(toy_registry, tmp_path, kwargs, error, message):
    g = genkit.create("toy")
    with pytest.raises(error, match=message):
        g.train("digits", out=tmp_path / "run", **{**QUIET, **kwargs})
    assert not step_checkpoints(tmp_path / "run")


def test_unwritable_out_is_a_clear_error(toy_registry, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(TrainingError, match="cannot write to --out"):
        genkit.create("toy").train("digits", steps=1, out=blocker / "run", **QUIET)


def test_existing_run_needs_resume(toy_registry, tmp_path):
    genkit.create("toy").train("digits", steps=5, out=tmp_path / "run", **QUIET)
    with pytest.raises(TrainingError, match="pass --resume"):
        genkit.create("toy").train("digits", steps=5, out=tmp_path / "run", **QUIET)


def test_keep_limits_checkpoints_on_disk(toy_registry, tmp_path):
    genkit.create("toy").train("digits", steps=50, out=tmp_path / "run", checkpoint_every=10,
                               keep=2, **QUIET)
    assert [p.name for p in step_checkpoints(tmp_path / "run")] == ["step-00000040", "step-00000050"]


def test_gradient_accumulation_and_clipping_train(toy_registry):
    g = genkit.create("toy")
    report = g.train("digits", steps=40, batch_size=16, grad_accum=2, clip_grad=1.0,
                     log_every=10, **QUIET)
    assert report.final_loss < report.first_loss


def test_two_processes_with_gloo(toy_env, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "genkit", "train", "--plugin", "toy", "--out", str(out),
           "--steps", "40", "--batch-size", "32", "--log-every", "10", "--num-processes", "2",
           "--log-with", "none", "--no-progress", "--device", "cpu"]
    result = subprocess.run(cmd, env=toy_env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.loads((out / "model" / "genkit.json").read_text())
    assert manifest["training"]["num_processes"] == 2
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == sorted({m["step"] for m in metrics})  # main writes once
    assert metrics[-1]["loss"] < metrics[0]["loss"]


def test_ctrl_c_saves_a_checkpoint_and_exits_cleanly(toy_env, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "genkit", "train", "--plugin", "toy", "--out", str(out),
           "--steps", "100000", "--log-with", "none", "--no-progress", "--device", "cpu"]
    proc = subprocess.Popen(cmd, env=toy_env, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "metrics.jsonl").exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "Resume with: genkit train --out" in err
    saved = step_checkpoints(out)
    assert len(saved) == 1 and 0 < int(saved[0].name.split("-")[1]) < 100000
    assert not (out / "model").exists()  # the final model is only written by a finished run
