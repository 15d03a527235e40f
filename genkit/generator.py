"""The Generator base class: the one API every generator family implements.

A plugin subclasses :class:`Generator` and supplies the model-specific parts: building
its modules, turning a data source into a dataset, one training step, one generation
batch and (optionally) its own file layout. genkit owns everything else: the training
loop, devices, precision, processes, checkpoints, resume, EMA, logging, progress and
batch writing.

Nothing here imports torch at module level: listing plugins must stay light.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from genkit.config import build_config, replace_config
from genkit.errors import ConfigError

if TYPE_CHECKING:
    import torch

    from genkit.training import StepContext, TrainArgs, TrainReport


@dataclasses.dataclass
class NoOptions:
    """Sampling options of a generator that takes none."""


class Generator:
    """Base class of every genkit generator.

    Class attributes a plugin sets:

    - ``Config``: dataclass of hyper-parameters (validated by :func:`genkit.config.build_config`).
    - ``SampleOptions``: dataclass of sampling options (``steps``, ``temperature``, ...).
    - ``modality``: ``"image"`` (samples are ``PIL.Image``) or ``"text"`` (samples are ``str``).
    - ``conditions``: which conditions ``sample`` accepts: ``"label"`` and/or ``"prompt"``.
    - ``module_names``: attributes holding the ``torch.nn.Module`` s that make up the model.
    - ``ema_modules``: those of ``module_names`` whose weights the engine averages (EMA).
    - ``default_data``: the data source ``train`` uses when none is given.
    - ``train_defaults``: this family's defaults for :class:`genkit.training.TrainArgs`.
    - ``manual_optimization``: True when ``training_step`` steps its own optimizers
      through ``ctx.optimize(...)`` (a GAN's two optimizers); else the engine backpropagates
      the returned ``"loss"``.
    """

    Config: ClassVar[type]
    SampleOptions: ClassVar[type] = NoOptions
    modality: ClassVar[str] = "image"
    conditions: ClassVar[tuple[str, ...]] = ()
    module_names: ClassVar[tuple[str, ...]] = ()
    ema_modules: ClassVar[tuple[str, ...]] = ()
    default_data: ClassVar[str | None] = None
    train_defaults: ClassVar[dict[str, Any]] = {}
    manual_optimization: ClassVar[bool] = False

    #: registry name; set by :func:`genkit.create` / :func:`genkit.load`
    name: str = ""

    def __init__(self, config: Any = None, *, init_seed: int = 0, **values: Any) -> None:
        if config is None:
            config = build_config(self.Config, values, what=f"{self._label()} config")
        elif values:
            config = replace_config(config, values, what=f"{self._label()} config")
        elif not isinstance(config, self.Config):
            raise ConfigError(f"{self._label()}: config must be a {self.Config.__name__}")
        self.config = config
        self.training_summary: dict[str, Any] = {}
        self.ema: Any = None  # set by the training engine: diffusers EMAModel per module
        self.source_dir: Path | None = None  # checkpoint this generator was loaded from
        self.init_seed = init_seed
        import torch

        from genkit.seeding import derive_seed

        with torch.random.fork_rng(devices=[]):  # the same config and seed, the same weights
            torch.manual_seed(derive_seed("init", init_seed))
            self.build()

    def _label(self) -> str:
        return self.name or type(self).__name__

    @classmethod
    def named(cls, name: str, *args: Any, **kwargs: Any) -> Generator:
        """An instance that knows its registry ``name`` from the start (for its messages)."""
        generator = cls.__new__(cls)
        generator.name = name
        generator.__init__(*args, **kwargs)
        return generator

    # ------------------------------------------------------------------ plugin parts
    def build(self) -> None:
        """Create the modules (as attributes named in ``module_names``) from ``self.config``."""
        raise NotImplementedError

    def modules(self) -> dict[str, torch.nn.Module]:
        """The model's modules by name (those in ``module_names`` that exist)."""
        return {n: getattr(self, n) for n in self.module_names if getattr(self, n, None) is not None}

    def make_dataset(self, data: Any, split: str) -> Any:
        """A ``torch.utils.data.Dataset`` for training from loaded ``data`` (see genkit.data)."""
        raise NotImplementedError

    def configure_optimizers(self, args: TrainArgs) -> dict[str, torch.optim.Optimizer]:
        """Optimizers by name. Default: one AdamW over every module's parameters."""
        import torch

        params = [p for m in self.modules().values() for p in m.parameters() if p.requires_grad]
        return {"model": torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)}

    def training_step(self, batch: Any, ctx: StepContext) -> Mapping[str, Any]:
        """One step on ``batch`` using ``ctx.models`` (the prepared modules) and
        ``ctx.generator`` (this step's seeded RNG); return ``{"loss": tensor, ...}``."""
        raise NotImplementedError

    def evaluate(self, data: Any) -> dict[str, float]:
        """Validation figures on held-out ``data`` (called by the engine when data has a
        validation split). Default: none."""
        return {}

    def generate(self, seeds: list[int], conditions: list[dict[str, Any]], options: Any,
                 stream: Callable[[str], None] | None = None) -> list[Any]:
        """Draw one sample per seed, on ``self.device``, in one batch.

        ``seeds[i]`` is sample i's own seed: every random number sample i uses must come
        from it (``torch.Generator(device).manual_seed(seeds[i])``), so a sample never
        depends on the batch it was drawn in. ``conditions[i]`` holds its conditions
        (``{"label": 3}``, ``{"prompt": "..."}``); ``options`` is a ``SampleOptions``;
        ``stream``, when given, receives the text of the first sample as it is produced.
        Returns PIL images (image modality) or strings (text modality).
        """
        raise NotImplementedError

    def accepted_conditions(self) -> tuple[str, ...]:
        """Conditions this instance accepts (may depend on the config, e.g. ``num_classes``)."""
        return self.conditions

    def write_extras(self, options: Any, seed: int, out: Path | None) -> list[Path]:
        """Write side outputs that are not per-sample (a denoising trajectory, an
        interpolation strip) as asked by ``options``; return the files written. Default: none."""
        return []

    def save_weights(self, directory: Path) -> None:
        """Write the weights (safetensors) into ``directory``. Default: one
        ``<module>.safetensors`` per module. Plugins override for ecosystem layouts."""
        from safetensors.torch import save_model

        for name, module in self.modules().items():
            save_model(module, str(directory / f"{name}.safetensors"))

    def load_weights(self, directory: Path) -> None:
        """Read the weights written by :meth:`save_weights` (never pickle)."""
        from safetensors.torch import load_model

        for name, module in self.modules().items():
            path = directory / f"{name}.safetensors"
            load_model(module, str(path), device=str(self.device))

    def weight_files(self, directory: Path) -> list[Path]:
        """The weight files of a checkpoint, for validation and identity hashing."""
        return sorted(p for p in directory.rglob("*.safetensors") if "training_state" not in p.parts)

    # ------------------------------------------------------------------ user API
    @property
    def device(self) -> torch.device:
        import torch

        return getattr(self, "_device", None) or torch.device("cpu")

    def to(self, device: Any) -> Generator:
        """Move every module to ``device`` (``"auto"``, ``"cpu"``, ``"cuda:1"``, ...)."""
        from genkit.devices import resolve_device

        self._device = resolve_device(device)
        for module in self.modules().values():
            module.to(self._device)
        if self.ema is not None:
            for ema in self.ema.values():
                ema.to(self._device)
        return self

    def train(self, data: Any = None, **kwargs: Any) -> TrainReport:
        """Train under genkit's engine (see :class:`genkit.training.TrainArgs` for every
        keyword: ``steps``, ``batch_size``, ``lr``, ``device``, ``precision``, ``seed``,
        ``out``, ``resume``, ``checkpoint_every``, ...).

        Args:
            data: a data-source spec (``"digits"``, ``"folder:PATH"``, ``"text:PATH"``,
                ``"pydoc"``, ``"hf:PATH"``) or already loaded data; None uses the
                family's default source.

        Returns:
            A :class:`genkit.training.TrainReport` (steps, losses, time, checkpoint).
        """
        from genkit.training import train

        return train(self, data, **kwargs)

    def sample(self, n: int | None = None, seed: int = 0, batch_size: int | None = None,
               **kwargs: Any) -> list[Any]:
        """``n`` samples (PIL images or strings); sample i depends only on (seed, i).

        Keywords are conditions (``label=3``, ``labels=[0, 1]``, ``prompt="..."``,
        ``prompts=[...]``, ``per_condition=K``) or this generator's sampling options.
        """
        from genkit.sampling import iter_samples

        return [s.output for s in iter_samples(self, n=n, seed=seed, batch_size=batch_size,
                                               **kwargs)]

    def iter_samples(self, n: int | None = None, seed: int = 0, batch_size: int | None = None,
                     **kwargs: Any) -> Iterator[Any]:
        """Like :meth:`sample`, but yields :class:`genkit.sampling.Sample` records one at a time."""
        from genkit.sampling import iter_samples

        return iter_samples(self, n=n, seed=seed, batch_size=batch_size, **kwargs)

    def sample_to(self, out: str | Path, n: int | None = None, seed: int = 0,
                  batch_size: int | None = None,
                  **kwargs: Any) -> Any:
        """Write ``n`` samples into folder ``out`` with a manifest; resumable (see genkit.sampling)."""
        from genkit.sampling import sample_to

        return sample_to(self, out, n=n, seed=seed, batch_size=batch_size, **kwargs)

    def save(self, path: str | Path) -> Path:
        """Write a checkpoint directory atomically (``genkit.json`` + safetensors weights)."""
        from genkit.checkpoint import save_checkpoint

        return save_checkpoint(self, Path(path))

    def options(self, values: Mapping[str, Any]) -> Any:
        """A validated ``SampleOptions`` from ``values``."""
        return build_config(self.SampleOptions, values, what=f"{self._label()} sampling option")

    @contextlib.contextmanager
    def inference(self) -> Iterator[None]:
        """Context manager for running the networks outside training: eval mode,
        ``torch.inference_mode`` and the EMA weights; the modules' train/eval state is
        restored afterwards. Sampling runs inside it; plugin APIs (encode, decode) can too."""
        import torch

        modules = self.modules()
        was_training = {n: m.training for n, m in modules.items()}
        for m in modules.values():
            m.eval()
        try:
            with torch.inference_mode(), self.sampling_weights():
                yield
        finally:
            for n, m in modules.items():
                m.train(was_training[n])

    def sampling_weights(self) -> Any:
        """Context manager: inside it the modules hold the EMA weights, when there are any."""
        from genkit.training import ema_weights

        return ema_weights(self)

    def num_parameters(self) -> int:
        return sum(p.numel() for m in self.modules().values() for p in m.parameters())

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} {self.config}>"
