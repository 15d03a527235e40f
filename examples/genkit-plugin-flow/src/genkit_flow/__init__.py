"""genkit-plugin-flow: a RealNVP normalising flow for genkit, as a third-party plugin.

genkit finds this package only through its entry point (``[project.entry-points.genkit]
flow = "genkit_flow"`` in pyproject.toml). This module stays light on purpose (no torch):
it registers the generator's *spec*; :mod:`genkit_flow.generator` is imported only when
a command needs the model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from genkit.plugin import hookimpl

__version__ = "0.1.0"
__all__ = ["register_generators"]


@hookimpl
def register_generators(register: Callable[..., Any]) -> None:
    """Offer the ``flow`` generator (images; exact log-likelihood)."""
    register("flow", target="genkit_flow.generator:FlowGenerator", modality="image",
             summary="RealNVP normalising flow (affine couplings, exact log-likelihood in "
                     "bits/dim), optional class conditioning")
