"""The conformance check: run a generator plugin through the whole contract.

:func:`check_generator` creates the generator on the CPU with a tiny config, trains a
few steps, samples with seeds (sample i must be the same drawn alone or in a batch),
saves, loads, samples again (equal), and checks that bad configs are rejected with
:class:`genkit.plugin.ConfigError`. Any broken promise raises :class:`ConformanceError`
with a message that says what to fix.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from genkit.api import Generator, create, load
from genkit.config import config_to_dict, field_types
from genkit.discovery.registry import get_registry
from genkit.errors import ConfigError
from genkit.testing.harness import ConformanceError, SingleClassPlugin, isolated_registry

#: file suffixes of pickle-based weight formats, which a checkpoint must never hold
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def _fail(name: str, message: str) -> ConformanceError:
    return ConformanceError(f"generator {name!r}: {message}")


# -------------------------------------------------------------------------- conformance
@dataclasses.dataclass
class ConformanceReport:
    """What :func:`check_generator` checked and measured."""

    name: str
    modality: str
    parameters: int
    steps: int
    first_loss: float
    final_loss: float
    seconds: dict[str, float]
    checks: list[str]


def check_generator(name_or_class: str | type, config: Mapping[str, Any] | None = None,
                    data: Any = None, *, steps: int = 3, batch_size: int = 8, n: int = 3,
                    seed: int = 0, sample_options: Mapping[str, Any] | None = None,
                    train_options: Mapping[str, Any] | None = None,
                    expect_lower_loss: bool = False,
                    bad_configs: Sequence[Mapping[str, Any]] = (),
                    probe_config: bool = True, device: str = "cpu",
                    workdir: str | Path | None = None, name: str | None = None,
                    ) -> ConformanceReport:
    """Run the whole generator contract on a tiny config; raise ConformanceError if broken.

    Args:
        name_or_class: an installed generator's name (``"flow"``) or a ``Generator``
            subclass defined at module level (registered for the check in an isolated
            registry under ``name``, default ``"under-test"``).
        config: a tiny config (it must train in seconds on a CPU).
        data: a data source (``"digits"``) or loaded data; None: the family's default.
        steps, batch_size: the short training run.
        n: samples drawn in each sampling check.
        seed: the base sampling seed.
        sample_options: sampling options (e.g. ``{"steps": 2}``) used in every draw.
        train_options: more training keywords (``lr``, ``ema_decay``, ...).
        expect_lower_loss: also require the loss at the end of training to be lower than
            at the start (mean of the last quarter of steps against the first quarter).
        bad_configs: configs the generator must reject with ConfigError (beside the
            generic unknown-key and wrong-type checks).
        probe_config: set each number of the config to -1 in turn: it must either be
            accepted or rejected with ConfigError, never crash with another error.
        device: where to run (``"cpu"``).
        workdir: a folder to keep each check's checkpoints in (a fresh sub-folder per
            call); default: a temporary folder, removed after.
        name: the registry name for a class under test.

    Returns:
        A :class:`ConformanceReport` of the checks and figures.
    """
    if isinstance(name_or_class, str):
        target_name = name_or_class
        registry_cm: Any = contextlib.nullcontext()
    else:
        if "<locals>" in getattr(name_or_class, "__qualname__", "<locals>"):
            raise ConformanceError(f"{name_or_class!r}: define the generator class at module "
                                   "level, so genkit can import it by its 'module:Class' path")
        target_name = name or "under-test"
        registry_cm = isolated_registry((f"conformance-{target_name}",
                                         SingleClassPlugin(target_name, name_or_class)))
    import torch

    # the caller's global RNG is left as it was (training and sampling reseed it)
    with registry_cm, _workdir(workdir) as work, torch.random.fork_rng(devices=[]):
        checker = _Checker(target_name, dict(config or {}), data, steps=steps,
                           batch_size=batch_size, n=n, seed=seed,
                           sample_options=dict(sample_options or {}),
                           train_options=dict(train_options or {}), device=device, work=work)
        return checker.run(expect_lower_loss, list(bad_configs), probe_config)


@contextlib.contextmanager
def _workdir(workdir: str | Path | None) -> Iterator[Path]:
    """A fresh folder for one check: inside ``workdir`` (kept, for inspection), or a
    temporary one (removed)."""
    if workdir is not None:
        Path(workdir).mkdir(parents=True, exist_ok=True)
        yield Path(tempfile.mkdtemp(prefix="check-", dir=workdir))
        return
    with tempfile.TemporaryDirectory(prefix="genkit-conformance-") as tmp:
        yield Path(tmp)


class _Checker:
    """The steps of :func:`check_generator`, one method per promise."""

    def __init__(self, name: str, config: dict[str, Any], data: Any, *, steps: int,
                 batch_size: int, n: int, seed: int, sample_options: dict[str, Any],
                 train_options: dict[str, Any], device: str, work: Path) -> None:
        self.name, self.config, self.data = name, config, data
        self.steps, self.batch_size, self.n, self.seed = steps, batch_size, n, seed
        self.sample_options, self.train_options = sample_options, train_options
        self.device, self.work = device, work
        self.checks: list[str] = []
        self.seconds: dict[str, float] = {}

    def run(self, expect_lower_loss: bool, bad_configs: list[dict[str, Any]],
            probe_config: bool) -> ConformanceReport:
        cls = self._timed("class", self.check_class)
        generator = self._timed("create", self.check_create)
        self._timed("config", lambda: self.check_bad_configs(cls, bad_configs, probe_config))
        losses = self._timed("train", lambda: self.check_train(generator, expect_lower_loss))
        samples = self._timed("sample", lambda: self.check_sampling(generator))
        self._timed("save_load", lambda: self.check_save_load(generator, samples))
        return ConformanceReport(self.name, generator.modality, generator.num_parameters(),
                                 self.steps, losses[0], losses[-1], self.seconds, self.checks)

    def _timed(self, what: str, fn: Any) -> Any:
        start = time.perf_counter()
        result = fn()
        self.seconds[what] = round(time.perf_counter() - start, 3)
        return result

    def _passed(self, check: str) -> None:
        self.checks.append(check)

    # ------------------------------------------------------------------ the class
    def check_class(self) -> type:

        spec = get_registry().generator(self.name)
        cls = spec.load_class()
        if not (isinstance(cls, type) and issubclass(cls, Generator)):
            raise _fail(self.name, f"{spec.target} is not a genkit.plugin.Generator subclass")
        if cls.modality not in ("image", "text"):
            raise _fail(self.name, f"modality must be 'image' or 'text', not {cls.modality!r}")
        if spec.modality != cls.modality:
            raise _fail(self.name, f"registered with modality {spec.modality!r} but the class "
                        f"says {cls.modality!r}; make register_generators(modality=...) agree")
        for attr in ("Config", "SampleOptions"):
            if not dataclasses.is_dataclass(getattr(cls, attr, None)):
                raise _fail(self.name, f"{attr} must be a @dataclass")
        if not cls.module_names:
            raise _fail(self.name, "module_names is empty: list the attributes holding modules")
        stray = set(cls.ema_modules) - set(cls.module_names)
        if stray:
            raise _fail(self.name, f"ema_modules {sorted(stray)} are not in module_names")
        self._passed("class: Generator subclass, dataclass Config/SampleOptions, modules named")
        return cls

    def check_create(self) -> Generator:

        generator = create(self.name, **self.config)
        if generator.name != self.name:
            raise _fail(self.name, f"genkit.create gave a generator named {generator.name!r}")
        modules = generator.modules()
        missing = [m for m in generator.module_names if m not in modules]
        if missing:
            raise _fail(self.name, f"build() did not create modules {missing}")
        if generator.num_parameters() == 0:
            raise _fail(self.name, "the model has no parameters")
        generator.options({})  # the default sampling options must be valid
        self._passed(f"create: {generator.num_parameters():,} parameters")
        return generator

    # ------------------------------------------------------------------ config
    def check_bad_configs(self, cls: type, bad_configs: list[dict[str, Any]],
                          probe: bool) -> None:

        types = field_types(cls.Config)
        self._expect_config_error({"no_such_key_for_conformance": 1}, "an unknown key")
        wrong = _wrong_type_value(types)
        if wrong is not None:
            self._expect_config_error(wrong, f"a value of the wrong type {wrong}")
        for bad in bad_configs:
            self._expect_config_error(bad, f"the bad config {bad}")
        if probe:
            self._probe_numbers(types)
        self._passed("config: unknown key, wrong type and bad values rejected with ConfigError")

    def _expect_config_error(self, values: dict[str, Any], what: str) -> None:

        try:
            create(self.name, **{**self.config, **values})
        except ConfigError:
            return
        except Exception as exc:
            raise _fail(self.name, f"{what} raised {type(exc).__name__}: {exc}; raise "
                        "genkit.plugin.ConfigError (use genkit.plugin.check in "
                        "Config.__post_init__)") from exc
        raise _fail(self.name, f"{what} was accepted; reject it in Config.__post_init__ "
                    "with genkit.plugin.check(...)")

    def _probe_numbers(self, types: dict[str, Any]) -> None:

        for key, tp in types.items():
            if tp not in (int, float):
                continue
            try:
                create(self.name, **{**self.config, key: tp(-1)})
            except ConfigError:
                continue
            except Exception as exc:
                raise _fail(self.name, f"{key}=-1 crashed with {type(exc).__name__}: {exc}; "
                            "check its range in Config.__post_init__ with "
                            "genkit.plugin.check(...) so users get a ConfigError") from exc

    # ------------------------------------------------------------------ training
    def check_train(self, generator: Generator, expect_lower: bool) -> list[float]:
        before = _parameter_fingerprint(generator)
        kwargs = {"steps": self.steps, "batch_size": self.batch_size, "device": self.device,
                  "seed": 0, "log_every": 1, "log_with": "none", "progress": False,
                  "out": str(self.work / "run"), **self.train_options}
        report = generator.train(self.data, **kwargs)
        losses = [float(record["loss"]) for record in report.history if "loss" in record]
        if report.steps != self.steps:
            raise _fail(self.name, f"trained {report.steps} steps, asked for {self.steps}")
        if not losses or not all(math.isfinite(v) for v in losses):
            raise _fail(self.name, f"training losses are not all finite: {losses}")
        if _parameter_fingerprint(generator) == before:
            raise _fail(self.name, "training did not change any weight; run the forward pass "
                        "through ctx.models[...] and return {'loss': ...} (or call "
                        "ctx.optimize with manual_optimization = True)")
        if expect_lower:
            quarter = max(1, len(losses) // 4)
            first, last = _mean(losses[:quarter]), _mean(losses[-quarter:])
            if not last < first:
                raise _fail(self.name, f"the loss did not go down in {self.steps} steps "
                            f"({first:.4g} -> {last:.4g}); raise steps or lr in the test")
        if not (self.work / "run" / "model" / "genkit.json").is_file():
            raise _fail(self.name, "training with out=DIR wrote no final model in DIR/model")
        self._passed(f"train: {self.steps} steps, loss {losses[0]:.4g} -> {losses[-1]:.4g}")
        return losses

    # ------------------------------------------------------------------ sampling
    def _sample(self, generator: Generator, seed: int, batch_size: int) -> list[Any]:
        return generator.sample(self.n, seed=seed, batch_size=batch_size, **self.sample_options)

    def check_sampling(self, generator: Generator) -> list[Any]:
        import torch

        torch.manual_seed(1234)  # a generator must not read the global RNG
        batched = self._sample(generator, self.seed, self.n)
        self._check_types(generator, batched)
        torch.manual_seed(5678)
        alone = self._sample(generator, self.seed, 1)
        for i, (a, b) in enumerate(zip(batched, alone)):
            if not _same(a, b):
                raise _fail(self.name, f"sample {i} differs when drawn alone and in a batch "
                            "(or it reads the global RNG): draw all randomness of sample i "
                            "from genkit.plugin.sample_generators(seeds, device)[i]")
        again = self._sample(generator, self.seed, self.n)
        if not all(_same(a, b) for a, b in zip(batched, again)):
            raise _fail(self.name, "the same seed gave different samples on a second draw")
        other = self._sample(generator, self.seed + 1, self.n)
        if all(_same(a, b) for a, b in zip(batched, other)):
            raise _fail(self.name, "another seed gave the very same samples: use the seeds")
        if self.n > 1 and all(_same(batched[0], s) for s in batched[1:]):
            raise _fail(self.name, "every sample of a batch is the same: use seeds[i] per sample")
        self._passed(f"sample: {self.n} samples, same alone or batched, seed-dependent")
        return batched

    def _check_types(self, generator: Generator, samples: list[Any]) -> None:
        if len(samples) != self.n:
            raise _fail(self.name, f"asked for {self.n} samples, got {len(samples)}")
        if generator.modality == "text":
            bad = [type(s).__name__ for s in samples if not isinstance(s, str)]
            if bad:
                raise _fail(self.name, f"a text generator must return str, got {bad}")
            return
        from PIL import Image

        bad = [type(s).__name__ for s in samples if not isinstance(s, Image.Image)]
        if bad:
            raise _fail(self.name, f"an image generator must return PIL images, got {bad}")
        if len({(s.size, s.mode) for s in samples}) != 1:
            raise _fail(self.name, "samples of one run differ in size or mode")

    # ------------------------------------------------------------------ checkpoints
    def check_save_load(self, generator: Generator, samples: list[Any]) -> None:

        path = generator.save(self.work / "saved")
        _check_checkpoint_files(self.name, Path(path))
        for source in (Path(path), self.work / "run"):
            loaded = load(source, device=self.device)
            if loaded.name != self.name or type(loaded) is not type(generator):
                raise _fail(self.name, f"{source} loaded as {type(loaded).__name__} "
                            f"{loaded.name!r}")
            if config_to_dict(loaded.config) != config_to_dict(generator.config):
                raise _fail(self.name, f"the config read back from {source} differs: "
                            f"{loaded.config} != {generator.config}")
            again = self._sample(loaded, self.seed, self.n)
            if not all(_same(a, b) for a, b in zip(samples, again)):
                raise _fail(self.name, f"samples from the checkpoint {source} differ from "
                            "the saved generator's: save_weights/load_weights must round-trip "
                            "every weight (the EMA weights are the ones saved)")
        self._passed("save/load: safetensors only, config and samples equal after reload")


def _check_checkpoint_files(name: str, path: Path) -> None:
    files = [p for p in path.rglob("*") if p.is_file()]
    if not (path / "genkit.json").is_file():
        raise _fail(name, f"{path} has no genkit.json")
    pickled = [str(p.relative_to(path)) for p in files if p.suffix in PICKLE_SUFFIXES]
    if pickled:
        raise _fail(name, f"the checkpoint holds pickle-format files {pickled}; write every "
                    "weight with safetensors")
    if not any(p.suffix == ".safetensors" for p in files):
        raise _fail(name, "the checkpoint holds no .safetensors file")


def _wrong_type_value(types: dict[str, Any]) -> dict[str, Any] | None:
    """A config value of the wrong type for the first numeric or boolean field."""
    for key, tp in types.items():
        if tp in (int, float):
            return {key: "not-a-number"}
        if tp is bool:
            return {key: "not-a-bool"}
    return None


def _parameter_fingerprint(generator: Generator) -> list[float]:
    import torch

    with torch.no_grad():
        return [float(p.double().sum()) for m in generator.modules().values()
                for p in m.parameters()]


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def _same(a: Any, b: Any) -> bool:
    """Whether two samples are equal: strings exactly, images pixel for pixel."""
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    import numpy as np

    return a.size == b.size and a.mode == b.mode and np.array_equal(np.asarray(a), np.asarray(b))
