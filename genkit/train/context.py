"""What a plugin's ``training_step`` gets besides the batch."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from genkit.train.args import TrainArgs


class StepContext:
    """The prepared modules and optimizers, this step's seeded RNG, and the engine's
    backward / optimize helpers.

    Attributes:
        models: the modules by name, prepared by accelerate (DDP-wrapped when distributed).
        optimizers: the optimizers by name.
        device: the device of this process.
        generator: a ``torch.Generator`` seeded by (seed, step, micro-step, process): draw
            every random number of the step from it (or from the global RNG, seeded alike).
        step: the optimizer step being taken (0-based).
        args: the run's :class:`genkit.train.args.TrainArgs`.
        accelerator: the ``accelerate.Accelerator`` of the run.
    """

    def __init__(self, accelerator: Any, models: dict[str, torch.nn.Module],
                 optimizers: dict[str, torch.optim.Optimizer], schedulers: dict[str, Any],
                 generator: torch.Generator, args: TrainArgs,
                 clip: Callable[[torch.optim.Optimizer], None]) -> None:
        self.accelerator = accelerator
        self.models = models
        self.optimizers = optimizers
        self.device: torch.device = accelerator.device
        self.generator = generator
        self.step = 0
        self.args = args
        self._schedulers = schedulers
        self._clip = clip

    def backward(self, loss: torch.Tensor) -> None:
        self.accelerator.backward(loss)

    def optimize(self, name: str, loss: torch.Tensor) -> None:
        """Manual optimization: zero the named optimizer's grads, backpropagate ``loss``,
        clip, step the optimizer and its learning-rate schedule."""
        optimizer = self.optimizers[name]
        optimizer.zero_grad(set_to_none=True)
        self.accelerator.backward(loss)
        self._clip(optimizer)
        optimizer.step()
        self._schedulers[name].step()
        optimizer.zero_grad(set_to_none=True)

    def unwrap(self, module: torch.nn.Module) -> torch.nn.Module:
        return self.accelerator.unwrap_model(module)
