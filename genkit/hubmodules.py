"""Weights of modules that save themselves the Hugging Face way (``PyTorchModelHubMixin``).

A plugin whose networks are plain ``torch.nn.Module`` s with
``huggingface_hub.PyTorchModelHubMixin`` mixes :class:`HubModules` into its generator:
each module is written to ``DIR/<name>/`` (``config.json`` + ``model.safetensors``), so
``Model.from_pretrained("DIR/<name>")`` opens it without genkit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genkit.errors import CheckpointError

WEIGHTS_FILE = "model.safetensors"

_MODEL_CARD = """
---
{{ card_data }}
---

A `{class_name}` network of a genkit `{family}` model: plain PyTorch, saved with
`huggingface_hub.PyTorchModelHubMixin` (config.json + model.safetensors). Load it without
genkit:

```python
from {module} import {class_name}
model = {class_name}.from_pretrained("path/to/this/folder")
```
"""


def hub_mixin_options(family: str, module: str, class_name: str,
                      task: str = "image-generation") -> dict[str, Any]:
    """``PyTorchModelHubMixin`` class options for a plugin network: library, tags and a
    model card saying how to open the folder without genkit.

    Example::

        class ConvDecoder(nn.Module, PyTorchModelHubMixin,
                          **hub_mixin_options("vae", __name__, "ConvDecoder")): ...
    """
    card = (_MODEL_CARD.replace("{class_name}", class_name).replace("{family}", family)
            .replace("{module}", module))
    return {"library_name": "genkit", "tags": ["genkit", family, task],
            "model_card_template": card}


class HubModules:
    """``save_weights`` / ``load_weights`` for a generator whose modules are hub mixins.

    Mix it in before the generator base: ``class GANGenerator(HubModules, Generator)``.
    """

    name: str
    modules: Any
    device: Any

    def save_weights(self, directory: Path) -> None:
        """``DIR/<module>/`` via ``save_pretrained`` (config.json + model.safetensors)."""
        for name, module in self.modules().items():
            module.save_pretrained(directory / name)

    def load_weights(self, directory: Path) -> None:
        """Read the weights written by :meth:`save_weights`, strictly, onto ``self.device``."""
        from safetensors.torch import load_model

        for name, module in self.modules().items():
            path = directory / name / WEIGHTS_FILE
            if not path.is_file():
                raise CheckpointError(f"{directory} has no {name}/{WEIGHTS_FILE}: it is not a "
                                      f"{self.name or 'genkit'} checkpoint, or it is "
                                      "incomplete; re-save it")
            load_model(module, str(path), strict=True, device=str(self.device))
