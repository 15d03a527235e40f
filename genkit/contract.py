"""The plugin contract: the base class a generator family implements.

:class:`GeneratorContract` declares every hook genkit calls on a plugin, each with its
default and what it must do, and the state genkit keeps on a generator (config, device,
EMA, where it was loaded from). It has no user verbs: ``train``, ``sample``, ``save`` and
friends live on :class:`genkit.api.Generator`, the class plugins actually subclass
(through ``genkit.plugin.Generator``), so the engine, the sampler and the store depend on
this contract alone.

Nothing here imports torch at module level: listing plugins must stay light.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from genkit.config import build_config, replace_config
from genkit.devices import resolve_device
from genkit.errors import CheckpointError, ConfigError, SamplingError
from genkit.seeding import derive_seed

if TYPE_CHECKING:
    import torch

    from genkit.train.args import TrainArgs
    from genkit.train.context import StepContext


#: every edit task genkit knows (a family does the ones in its ``edit_tasks``)
EDIT_TASKS = ("img2img", "inpaint", "reconstruct")


@dataclasses.dataclass
class NoOptions:
    """Sampling options of a generator that takes none."""


class GeneratorContract:
    """What a generator family supplies, and the state genkit keeps on it.

    Class attributes a plugin sets:

    - ``Config``: dataclass of hyper-parameters (validated by :func:`genkit.config.build_config`).
    - ``SampleOptions``: dataclass of sampling options (``steps``, ``temperature``, ...).
    - ``modality``: ``"image"`` (samples are ``PIL.Image``) or ``"text"`` (samples are ``str``).
    - ``conditions``: which conditions ``sample`` accepts: ``"label"`` and/or ``"prompt"``.
    - ``module_names``: attributes holding the ``torch.nn.Module`` s that make up the model.
    - ``ema_modules``: those of ``module_names`` whose weights the engine averages (EMA).
    - ``default_data``: the data source ``train`` uses when none is given.
    - ``train_defaults``: this family's defaults for :class:`genkit.train.args.TrainArgs`.
    - ``manual_optimization``: True when ``training_step`` steps its own optimizers
      through ``ctx.optimize(...)`` (a GAN's two optimizers); else the engine backpropagates
      the returned ``"loss"``.
    - ``default_sample_batch_size``: samples per generation batch when the user gives
      none (None: 64 for images, 16 for text).
    - ``edit_tasks``: which of :data:`EDIT_TASKS` :meth:`edit_batch` does (none by default).
    - ``legacy_config``: for config fields added after checkpoints were saved without them,
      the value those checkpoints were trained with (used when a saved genkit.json lacks
      the field, where the current default would silently change an old model).
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
    default_sample_batch_size: ClassVar[int | None] = None
    edit_tasks: ClassVar[tuple[str, ...]] = ()
    legacy_config: ClassVar[dict[str, Any]] = {}

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
        self.ema: dict[str, Any] | None = None  # set by the training engine: EMAModel per module
        self.source_dir: Path | None = None  # checkpoint this generator was loaded from
        self.source_identity: str | None = None  # that checkpoint's verified identity
        self.init_seed = init_seed
        self._device: torch.device | None = None  # None: the CPU (see .to)
        self._ema_swapped = False  # inside sampling_weights(): the EMA weights are in place
        import torch  # lazy: the contract module is imported while listing plugins

        with torch.random.fork_rng(devices=[]):  # the same config and seed, the same weights
            torch.manual_seed(derive_seed("init", init_seed))
            self.build()

    def _label(self) -> str:
        return self.name or type(self).__name__

    @classmethod
    def named(cls, name: str, *args: Any, **kwargs: Any) -> Any:
        """An instance that knows its registry ``name`` from the start (for its messages)."""
        generator = cls.__new__(cls)
        generator.name = name
        generator.__init__(*args, **kwargs)
        return generator

    # ------------------------------------------------------------------ building
    def build(self) -> None:
        """Create the modules (as attributes named in ``module_names``) from ``self.config``."""
        raise NotImplementedError

    def modules(self) -> dict[str, torch.nn.Module]:
        """The model's modules by name (those in ``module_names`` that exist)."""
        return {n: getattr(self, n) for n in self.module_names if getattr(self, n, None) is not None}

    @classmethod
    def saved_config(cls, saved: dict[str, Any]) -> dict[str, Any]:
        """A checkpoint's config values as this version reads them: ``saved``, with
        :attr:`legacy_config` filling the fields it predates."""
        return {**cls.legacy_config, **saved}

    @property
    def derived_config_keys(self) -> tuple[str, ...]:
        """Config keys the plugin fills in from the data or a base model, not the user; a
        resumed run may differ from its checkpoint in these. Default: none."""
        return ()

    # ------------------------------------------------------------------ training
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
        """Validation figures on held-out ``data``, run by the engine inside
        :meth:`inference` when the data source has a held-out split. Default: none."""
        return {}

    @classmethod
    def evaluates_held_out(cls) -> bool:
        """Whether this family overrides :meth:`evaluate` (the engine loads held-out data
        only then)."""
        return cls.evaluate is not GeneratorContract.evaluate

    # ------------------------------------------------------------------ sampling
    def generate(self, seeds: list[int], conditions: list[dict[str, Any]], options: Any,
                 stream: Callable[[str], None] | None = None) -> list[Any]:
        """Draw one sample per seed, on ``self.device``, in one batch.

        ``seeds[i]`` is sample i's own seed: every random number sample i uses must come
        from it (``genkit.plugin.sample_generators(seeds, device)[i]``), so a sample never
        depends on the batch it was drawn in. ``conditions[i]`` holds its conditions
        (``{"label": 3}``, ``{"prompt": "..."}``); ``options`` is a ``SampleOptions``;
        ``stream``, when given, receives the text of the first sample as it is produced.
        genkit calls it inside :meth:`inference`. Returns PIL images (image modality) or
        strings (text modality).
        """
        raise NotImplementedError

    def accepted_conditions(self) -> tuple[str, ...]:
        """Conditions this instance accepts (may depend on the config, e.g. ``num_classes``)."""
        return self.conditions

    def write_extras(self, options: Any, seed: int, out: Path | None) -> list[Path]:
        """Write side outputs that are not per-sample (a denoising trajectory, an
        interpolation strip) as asked by ``options``; return the files written. genkit calls
        it inside :meth:`inference`. Default: none."""
        return []

    def options(self, values: Mapping[str, Any]) -> Any:
        """A validated ``SampleOptions`` from ``values``."""
        return build_config(self.SampleOptions, values, what=f"{self._label()} sampling option")

    # ------------------------------------------------------------------ editing
    def edit_batch(self, images: torch.Tensor, masks: torch.Tensor | None, seeds: list[int],
                   conditions: list[dict[str, Any]], options: Any, task: str,
                   strength: float | None) -> list[Any]:
        """Edit one batch of images, on ``self.device``; return one PIL image per input.

        ``images`` are ``(B, C, H, W)`` in [-1, 1] at :meth:`edit_image_format`;
        ``masks`` ``(B, 1, H, W)`` with 1 = the region to fill (``task == "inpaint"``
        only, else None); ``task`` is one of ``accepted_edit_tasks()``; ``strength`` is in
        [0, 1] or None (the family's default; a family that takes none refuses one).
        ``seeds[i]``, ``conditions[i]`` and ``options`` (from :meth:`edit_options`) are as
        in :meth:`generate`: every random number of row i comes from
        ``genkit.plugin.sample_generators(seeds, device)[i]``, so edit i depends only on
        (checkpoint, seed, i, input i). genkit calls it inside :meth:`inference`, after
        checking the task, masks, strength and conditions (and :meth:`check_edit`).
        Default: no edits.
        """
        raise SamplingError(self.cannot_edit(task))

    def accepted_edit_tasks(self) -> tuple[str, ...]:
        """Edit tasks this instance does (may depend on the config). Default: ``edit_tasks``."""
        return self.edit_tasks

    def cannot_edit(self, task: str) -> str:
        """The one-line message for a task this generator does not do."""
        tasks = self.accepted_edit_tasks()
        if not tasks:
            what = "it makes text" if self.modality == "text" else "its family has no edit hook"
            return f"generator {self._label()!r} cannot edit images ({what}); no --task works with it"
        return (f"generator {self._label()!r} does not do --task {task}; it does: "
                f"{', '.join(tasks)}")

    def edit_image_format(self) -> tuple[int, int]:
        """``(channels, size)`` of the square images :meth:`edit_batch` takes; inputs are
        converted and resized to it. Default: the config's ``channels`` and ``image_size``."""
        return int(getattr(self.config, "channels", 3)), int(self.config.image_size)

    def check_edit(self, task: str, strength: float | None, options: Any) -> None:
        """Refuse an edit this family cannot make with these settings (a strength it takes
        none of, options that do not go together) with a one-line error, before any file
        is written. ``task`` is already one of ``accepted_edit_tasks()``. Default: no check."""

    def edit_options(self, values: Mapping[str, Any]) -> Any:
        """Validated options of :meth:`edit_batch` from ``values``. Default: the sampling
        options (:meth:`options`); families with edit-only settings override it."""
        return self.options(values)

    # ------------------------------------------------------------------ weights
    def save_weights(self, directory: Path) -> None:
        """Write the weights (safetensors) into ``directory``. Default: one
        ``<module>.safetensors`` per module. Plugins override for ecosystem layouts."""
        from safetensors.torch import save_model

        for name, module in self.modules().items():
            save_model(module, str(directory / f"{name}.safetensors"))

    def load_weights(self, directory: Path) -> None:
        """Read the weights written by :meth:`save_weights` onto ``self.device`` (never pickle)."""
        from safetensors.torch import load_model

        for name, module in self.modules().items():
            load_model(module, str(directory / f"{name}.safetensors"), device=str(self.device))

    def weight_files(self, directory: Path) -> list[Path]:
        """The weight files of a checkpoint, for validation and identity hashing (the store
        leaves out its own training state). Default: every ``*.safetensors`` file."""
        return sorted(directory.rglob("*.safetensors"))

    @classmethod
    def from_foreign_dir(cls, path: Path, device: torch.device) -> GeneratorContract:
        """A generator over a directory written without genkit (no ``genkit.json``), such
        as a plain diffusers pipeline. Default: this family opens none."""
        raise CheckpointError(f"{path} is not a genkit checkpoint (no genkit.json), and this "
                              f"generator family cannot open other directories")

    # ------------------------------------------------------------------ publishing
    @classmethod
    def model_card_details(cls, manifest: dict[str, Any], where: str) -> dict[str, Any]:
        """What this family adds to a checkpoint's model card: ``pipeline_tag``, ``tags``
        and ``usage`` (a snippet that opens the folder ``where`` without genkit).
        Default: nothing beyond genkit's own card."""
        return {}

    def merge_lora(self) -> GeneratorContract:
        """A generator with its LoRA adapter merged into the base weights, for
        ``genkit export --merge``. Default: this family trains no adapters."""
        raise CheckpointError(f"{self._label()} holds no LoRA adapter: there is nothing to "
                              "merge; export the checkpoint as it is")

    # ------------------------------------------------------------------ state
    @property
    def device(self) -> torch.device:
        import torch

        return self._device or torch.device("cpu")

    def to(self, device: Any) -> Any:
        """Move every module (and the EMA weights) to ``device`` (``"auto"``, ``"cpu"``,
        ``"cuda:1"``, ...); returns the generator."""
        self._device = resolve_device(device)
        for module in self.modules().values():
            module.to(self._device)
        for ema in (self.ema or {}).values():
            ema.to(self._device)
        return self

    @contextlib.contextmanager
    def inference(self) -> Iterator[None]:
        """Run the networks outside training: eval mode, ``torch.inference_mode`` and the
        EMA weights; the modules' train/eval state is restored afterwards. Sampling,
        held-out evaluation and side outputs run inside it; plugin APIs (encode, decode)
        can too."""
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

    @contextlib.contextmanager
    def sampling_weights(self) -> Iterator[None]:
        """Inside the block the EMA'd modules hold their EMA weights (no-op without EMA,
        and reentrant)."""
        if not self.ema or self._ema_swapped:
            yield
            return
        modules = self.modules()
        for name, ema in self.ema.items():
            ema.store(modules[name].parameters())
            ema.copy_to(modules[name].parameters())
        self._ema_swapped = True
        try:
            yield
        finally:
            self._ema_swapped = False
            for name, ema in self.ema.items():
                ema.restore(modules[name].parameters())

    def num_parameters(self) -> int:
        return sum(p.numel() for m in self.modules().values() for p in m.parameters())

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} {self.config}>"
