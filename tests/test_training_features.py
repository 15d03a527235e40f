"""Training features around the loop: the best model and early stop, callbacks, starting
from a checkpoint, resuming from a chosen one with changed settings, config files,
per-plugin help and thread choice."""

from __future__ import annotations

import json

import pytest
import torch
from toy import ToyGenerator

import genkit
from genkit.devices import choose_threads
from genkit.errors import ConfigError, TrainingError
from genkit.plugin import hookimpl
from genkit.testing import CliRunner

QUIET = {"progress": False, "log_with": "none"}
SCRIPT = [5.0, 4.0, 3.0, 3.5, 3.6, 3.7, 3.8, 3.9]  # held-out figure per evaluation


class ScriptedToy(ToyGenerator):
    """The toy whose held-out figure follows :data:`SCRIPT`, one value per evaluation."""

    def build(self) -> None:
        super().build()
        self.evaluations = 0

    def evaluate(self, data):
        value = SCRIPT[min(self.evaluations, len(SCRIPT) - 1)]
        self.evaluations += 1
        return {"val_loss": value}


class ScriptedPlugin:
    @hookimpl
    def register_generators(self, register):
        register("scripted", target="test_training_features:ScriptedToy", summary="test")


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, int, bool]] = []

    def on_step_end(self, event):
        self.events.append(("step", event.step, False))

    def on_evaluate(self, event):
        self.events.append(("evaluate", event.step, event.is_best))

    def on_checkpoint(self, event):
        assert (event.path / "genkit.json").is_file()
        self.events.append(("checkpoint", event.step, False))


@pytest.fixture
def scripted(toy_registry):
    toy_registry.register_plugin(ScriptedPlugin(), name="scripted")
    yield toy_registry
    toy_registry.unregister_plugin("scripted")


def test_best_model_is_kept_and_training_stops_early(scripted, tmp_path):
    g = genkit.create("scripted")
    recorder = Recorder()
    report = g.train("digits", steps=40, out=tmp_path / "run", eval_every=2, keep_best=True,
                     early_stop=2, eval_metric="val_loss", callbacks=[recorder], **QUIET)
    # evaluations at 2, 4, 6 (best: 3.0), 8, 10: two without improvement -> stop at 10
    assert report.steps == 10 and not report.interrupted
    assert [e[1:] for e in recorder.events if e[0] == "evaluate"] == [
        (2, True), (4, True), (6, True), (8, False), (10, False)]
    assert sum(e[0] == "step" for e in recorder.events) == 10
    assert [e[1] for e in recorder.events if e[0] == "checkpoint"] == [10]
    best = json.loads((tmp_path / "run" / "best" / "genkit.json").read_text())
    assert best["training"]["steps"] == 6  # written when step 6 was the best
    summary = json.loads((tmp_path / "run" / "model" / "genkit.json").read_text())["training"]
    assert summary["early_stopped"] and summary["evaluation"]["best_step"] == 6
    assert genkit.load(tmp_path / "run" / "best").training_summary["steps"] == 6


def test_keep_best_needs_evaluations(toy_registry, tmp_path):
    with pytest.raises(ConfigError, match="--eval-every"):
        genkit.create("toy").train("digits", steps=2, out=tmp_path / "r", keep_best=True, **QUIET)


def test_plugin_callbacks_run_and_a_failing_callback_is_dropped(toy_registry, tmp_path, capsys):
    seen = []

    class Failing:
        def on_step_end(self, event):
            raise RuntimeError("boom")

    class CallbackPlugin:
        @hookimpl
        def register_callbacks(self, register):
            register(type("Counter", (), {"on_step_end": lambda self, e: seen.append(e.step)})())

    toy_registry.register_plugin(CallbackPlugin(), name="callbacks")
    try:
        report = genkit.create("toy").train("digits", steps=4, callbacks=[Failing()], **QUIET)
    finally:
        toy_registry.unregister_plugin("callbacks")
    assert report.steps == 4 and seen == [1, 2, 3, 4]
    warnings = [line for line in capsys.readouterr().err.splitlines() if "boom" in line]
    assert len(warnings) == 1 and "dropped" in warnings[0]  # once, then it is gone
    with pytest.raises(ConfigError, match="not a training callback"):
        genkit.create("toy").train("digits", steps=1, callbacks=[object()], **QUIET)


def test_init_from_starts_from_the_checkpoints_weights_and_records_it(toy_registry, tmp_path):
    a = genkit.create("toy", hidden=32)
    a.train("digits", steps=5, out=tmp_path / "a", **QUIET)
    # through the CLI: the config (hidden=32) comes from the checkpoint
    result = CliRunner().invoke(["train", "--init-from", str(tmp_path / "a" / "model"),
                                 "--out", str(tmp_path / "b"), "--steps", "1", "--lr", "1e-12",
                                 "--no-progress", "--log-with", "none"])
    assert result.exit_code == 0, result.output
    b = genkit.load(tmp_path / "b")
    assert b.config.hidden == 32
    assert torch.allclose(b.net[0].weight, genkit.load(tmp_path / "a").net[0].weight, atol=1e-6)
    origin = b.training_summary["init_from"]
    assert origin["path"] == str(tmp_path / "a" / "model") and len(origin["identity"]) == 16
    with pytest.raises(genkit.CheckpointError, match="do not fit"):
        genkit.create("toy", hidden=16).train("digits", steps=1, init_from=str(tmp_path / "a"),
                                              **QUIET)


def test_resume_from_a_chosen_checkpoint_repeats_the_run(toy_registry, tmp_path):
    straight = genkit.create("toy")
    straight.train("digits", steps=10, out=tmp_path / "s", checkpoint_every=5, **QUIET)
    g = genkit.create("toy")
    g.train("digits", steps=10, out=tmp_path / "r", checkpoint_every=5, **QUIET)
    again = genkit.create("toy")
    again.train("digits", steps=10, out=tmp_path / "r",
                resume_from=str(tmp_path / "r" / "checkpoints" / "step-00000005"), **QUIET)
    assert torch.equal(again.net[0].weight, straight.net[0].weight)
    steps = [json.loads(line)["step"] for line in
             (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert len(steps) == len(set(steps))  # the lines past step 5 were not kept twice
    with pytest.raises(TrainingError, match="without training state"):
        genkit.create("toy").train("digits", steps=12, out=tmp_path / "r",
                                   resume_from=str(tmp_path / "r" / "model"), **QUIET)


def test_resume_applies_a_new_lr_and_refuses_a_new_batch_size(toy_registry, tmp_path):
    genkit.create("toy").train("digits", steps=4, out=tmp_path / "r", lr=1e-3, batch_size=16,
                               checkpoint_every=4, log_every=1, **QUIET)
    g = genkit.create("toy")
    g.train("digits", steps=6, out=tmp_path / "r", resume=True, lr=5e-4, log_every=1, **QUIET)
    records = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    lrs = {r["step"]: r["lr"] for r in records if "lr" in r}
    assert lrs[4] == pytest.approx(1e-3) and lrs[6] == pytest.approx(5e-4)
    summary = genkit.load(tmp_path / "r").training_summary
    assert summary["batch_size"] == 16  # inherited from the run, not the family default
    assert summary["resumes"] == [{"step": 4, "changed": {"steps": [4, 6], "lr": [1e-3, 5e-4]}}]
    with pytest.raises(TrainingError, match="cannot change --batch-size 16 -> 8"):
        genkit.create("toy").train("digits", steps=8, out=tmp_path / "r", resume=True,
                                   batch_size=8, **QUIET)


@pytest.mark.parametrize("suffix, text", [
    (".toml", 'steps = 50\nbatch_size = 16\nlog_with = "none"\n[set]\nhidden = 16\n'),
    (".json", '{"steps": 50, "batch-size": 16, "log_with": "none", "set": {"hidden": 16}}'),
    (".yaml", "steps: 50\nbatch_size: 16\nlog_with: none\nset:\n  hidden: 16\n"),
])
def test_config_files_give_defaults_and_the_command_line_wins(toy_registry, tmp_path, suffix,
                                                              text):
    config = tmp_path / f"run{suffix}"
    config.write_text(text)
    result = CliRunner().invoke(["train", "--plugin", "toy", "--config", str(config),
                                 "--steps", "3", "--out", str(tmp_path / "run"), "--no-progress"])
    assert result.exit_code == 0, result.output
    g = genkit.load(tmp_path / "run")
    assert g.training_summary["steps"] == 3 and g.training_summary["batch_size"] == 16
    assert g.config.hidden == 16


def test_a_bad_config_file_is_one_line(toy_registry, tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("steps = [\n")
    result = CliRunner().invoke(["train", "--plugin", "toy", "--config", str(config),
                                 "--out", str(tmp_path / "r")])
    lines = [line for line in result.stderr.splitlines() if line]
    assert result.exit_code == 2 and len(lines) == 1 and "not valid toml" in lines[0]
    config.write_text("stepz = 3\n")
    result = CliRunner().invoke(["train", "--plugin", "toy", "--config", str(config),
                                 "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "unknown option 'stepz'" in result.stderr


def test_per_plugin_help_lists_the_familys_options(toy_registry):
    train_help = CliRunner().invoke(["train", "--plugin", "toy", "--help"]).output
    assert "toy config (--set KEY=VALUE" in train_help and "hidden=64" in train_help
    sample_help = CliRunner().invoke(["sample", "--plugin", "toy", "--help"]).output
    assert "toy sampling options" in sample_help and "steps=4" in sample_help
    vae_help = CliRunner().invoke(["train", "--plugin", "vae", "--help"]).output
    assert "likelihood=bernoulli" in vae_help and "bernoulli | gaussian" in vae_help


def test_threads_follow_the_free_cores(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("genkit.devices.available_cores", lambda: 8)
    monkeypatch.setattr("os.getloadavg", lambda: (0.0, 0.0, 0.0))
    assert choose_threads() == 8 and choose_threads(processes=2) == 4
    monkeypatch.setattr("os.getloadavg", lambda: (6.2, 0.0, 0.0))  # a busy machine
    assert choose_threads() == 2
    assert choose_threads(3) == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "5")
    assert choose_threads() == 5
    with pytest.raises(genkit.DeviceError, match="--threads"):
        choose_threads(0)


def test_a_run_records_its_threads(toy_registry, tmp_path):
    genkit.create("toy").train("digits", steps=1, out=tmp_path / "r", threads=1, **QUIET)
    assert genkit.load(tmp_path / "r").training_summary["threads"] == 1


def test_a_run_folder_with_other_files_is_refused(toy_registry, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(TrainingError, match="not a genkit run"):
        genkit.create("toy").train("digits", steps=1, out=tmp_path / "mine", **QUIET)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_leftover_temp_directories_are_cleaned(toy_registry, tmp_path):
    genkit.create("toy").train("digits", steps=2, out=tmp_path / "r", checkpoint_every=2,
                               **QUIET)
    stale = tmp_path / "r" / "checkpoints" / ".step-00000004.tmp-0123abcd"
    stale.mkdir()
    (stale / "half.safetensors").write_bytes(b"\0" * 10)
    genkit.create("toy").train("digits", steps=4, out=tmp_path / "r", resume=True, **QUIET)
    assert not stale.exists()
    assert sorted(p.name for p in (tmp_path / "r" / "checkpoints").iterdir()) == [
        "step-00000002", "step-00000004"]


def test_a_locked_run_folder_names_its_holder(toy_registry, tmp_path):
    from genkit.errors import FolderBusyError
    from genkit.fs import folder_lock

    (tmp_path / "r").mkdir()
    with folder_lock(tmp_path / "r", "--out"), pytest.raises(FolderBusyError, match="pid"):
        genkit.create("toy").train("digits", steps=1, out=tmp_path / "r", **QUIET)


def test_a_time_budget_ends_on_time_and_a_resume_gets_the_rest(toy_registry, tmp_path):
    g = genkit.create("toy")
    report = g.train("digits", time="4s", out=tmp_path / "r", lr_schedule="cosine", **QUIET)
    assert abs(report.seconds - 4.0) <= 0.4, report.seconds  # within 10% of the budget
    summary = genkit.load(tmp_path / "r").training_summary
    assert summary["time_budget"] == 4.0 and summary["steps"] == report.steps > 20
    records = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["lr"] < 0.1 * 3e-3  # the cosine schedule was stretched to end there
    again = genkit.create("toy").train("digits", time=6, out=tmp_path / "r", resume=True, **QUIET)
    assert again.start_step == report.steps and abs(again.seconds - 2.0) <= 0.6, again.seconds
    with pytest.raises(ConfigError, match="--time"):
        genkit.create("toy").train("digits", time="ten minutes", **QUIET)
