"""The user-facing API: :class:`Generator` with its verbs, and ``create`` / ``load``.

:class:`Generator` is the plugin contract (:class:`genkit.contract.GeneratorContract`)
plus what users do with a generator: ``train``, ``sample``, ``iter_samples``,
``sample_to``, ``edit``, ``edit_to`` and ``save``. Each verb is a thin call into the layer that owns it
(``genkit.train``, ``genkit.sample``, ``genkit.store``), so this module is the top of
the library and nothing below imports it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genkit.contract import GeneratorContract
from genkit.data.loading import load_data as _load_data
from genkit.discovery.registry import get_registry
from genkit.sample.edit import edit_images, edit_to
from genkit.sample.plan import Sample, iter_samples
from genkit.sample.writer import SampleReport, sample_to
from genkit.store.checkpoint import load_checkpoint, save_checkpoint
from genkit.train.args import TrainReport
from genkit.train.engine import train as _train

if TYPE_CHECKING:
    from genkit.data.types import ImageData, TextData
    from genkit.discovery.specs import GeneratorSpec
    from genkit.eval.results import EvalResult


class Generator(GeneratorContract):
    """A generator: the plugin contract plus the user verbs. Plugins subclass this."""

    def train(self, data: Any = None, **kwargs: Any) -> TrainReport:
        """Train under genkit's engine (see :class:`genkit.train.args.TrainArgs` for every
        keyword: ``steps``, ``batch_size``, ``lr``, ``device``, ``precision``, ``seed``,
        ``out``, ``resume``, ``checkpoint_every``, ...).

        Args:
            data: a data-source spec (``"digits"``, ``"folder:PATH"``, ``"text:PATH"``,
                ``"pydoc"``, ``"hf:PATH"``) or already loaded data; None uses the
                family's default source.

        Returns:
            A :class:`genkit.train.args.TrainReport` (steps, losses, time, checkpoint).
        """
        return _train(self, data, **kwargs)

    def sample(self, n: int | None = None, seed: int = 0, batch_size: int | None = None,
               **kwargs: Any) -> list[Any]:
        """``n`` samples (PIL images or strings); sample i depends only on (seed, i).

        Keywords are conditions (``label=3``, ``labels=[0, 1]``, ``prompt="..."``,
        ``prompts=[...]``, ``per_condition=K``) or this generator's sampling options.
        """
        return [s.output for s in iter_samples(self, n=n, seed=seed, batch_size=batch_size,
                                               **kwargs)]

    def iter_samples(self, n: int | None = None, seed: int = 0, batch_size: int | None = None,
                     **kwargs: Any) -> Iterator[Sample]:
        """Like :meth:`sample`, but yields :class:`genkit.sample.plan.Sample` records one at
        a time."""
        return iter_samples(self, n=n, seed=seed, batch_size=batch_size, **kwargs)

    def sample_to(self, out: str | Path, n: int | None = None, seed: int = 0,
                  batch_size: int | None = None, **kwargs: Any) -> SampleReport:
        """Write ``n`` samples into folder ``out`` with a manifest; resumable (see
        :func:`genkit.sample.writer.sample_to`)."""
        return sample_to(self, out, n=n, seed=seed, batch_size=batch_size, **kwargs)

    def edit(self, images: Any, task: str = "img2img", masks: Any = None,
             strength: float | None = None, seed: int = 0, batch_size: int | None = None,
             label: int | None = None, prompt: str | None = None, **options: Any) -> list[Any]:
        """Edit images: ``img2img``, ``inpaint`` or ``reconstruct`` (as the family offers).

        Args:
            images: PIL images, image files or folders (a folder: its images by name);
                converted and resized to the model's format, with a warning saying so.
            task: ``img2img`` (vary the image, toward ``label``/``prompt``), ``inpaint``
                (fill the white region of each mask, keep the rest exactly) or
                ``reconstruct`` (the model's closest rendering of the image).
            masks: for ``inpaint``: one mask per image (a list, or a folder paired by file
                name) or one for all; white = fill, black = keep; each the size of its image.
            strength: in [0, 1], how far the edit may move from the input (diffusion:
                the share of the noise schedule; 0 returns the input, 1 ignores it);
                None: the family's default.
            seed: edit i uses ``sample_seed(seed, i)``, as sample i does.
            label, prompt: the condition of every edit (``labels=[...]`` gives each its
                own); a class-conditional model edits without one as best it can.
            **options: the family's edit options (``scheduler``, ``steps``, ...).

        Returns:
            One PIL image per input, in order.
        """
        return edit_images(self, images, task, masks, strength, seed, batch_size,
                           **_conditions(label, prompt), **options)

    def edit_to(self, out: str | Path, images: Any, task: str = "img2img", masks: Any = None,
                strength: float | None = None, seed: int = 0, batch_size: int | None = None,
                label: int | None = None, prompt: str | None = None,
                **kwargs: Any) -> SampleReport:
        """Write the edits of :meth:`edit` into folder ``out``: one file per input,
        ``manifest.jsonl`` naming each input and its mask, a before/after ``grid.png``;
        resumable (see :func:`genkit.sample.edit.edit_to` for ``format``, ``grid``,
        ``overwrite``)."""
        return edit_to(self, out, images, task, masks, strength, seed, batch_size,
                       **_conditions(label, prompt), **kwargs)

    def save(self, path: str | Path) -> Path:
        """Write a checkpoint directory atomically (``genkit.json`` + safetensors weights)."""
        return save_checkpoint(self, Path(path))


def _conditions(label: int | None, prompt: str | None) -> dict[str, Any]:
    return {k: v for k, v in (("label", label), ("prompt", prompt)) if v is not None}


def generators() -> list[GeneratorSpec]:
    """Every installed generator, as specs (nothing is imported to list them)."""
    return get_registry().generator_specs()


def create(name: str, /, *, seed: int = 0, **config: Any) -> Generator:
    """A new, untrained generator of family ``name`` with ``config`` (validated).

    The initial weights are a function of ``seed``: the same call builds the same model.
    """
    cls = get_registry().generator(name).load_class()
    return cls.named(name, init_seed=seed, **config)


def load(path: str | Path, device: str = "auto", plugin: str | None = None) -> Generator:
    """Load a checkpoint or run directory (the plugin is read from its ``genkit.json``);
    with ``plugin``, also a directory that plugin opens itself (a plain diffusers pipeline)."""
    return load_checkpoint(path, device=device, plugin=plugin)


def load_data(source: str, split: str = "train", **options: Any) -> ImageData | TextData:
    """Load a data source (``digits``, ``folder:PATH``, ``text:PATH``, ``pydoc``, ``hf:PATH``)."""
    return _load_data(source, split=split, **options)


def evaluate(path_or_generator: str | Path | Generator, data: Any = None, n: int = 500,
             **kwargs: Any) -> EvalResult:
    """Sample-quality figures of a checkpoint against held-out data (see :mod:`genkit.eval`)."""
    from genkit.eval.evaluate import evaluate as _evaluate  # lazy: sklearn, features

    return _evaluate(path_or_generator, data=data, n=n, **kwargs)
