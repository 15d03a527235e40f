"""The ``README.md`` model card written into every checkpoint directory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from genkit.fs import atomic_write_text


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def render_model_card(manifest: dict[str, Any]) -> str:
    """Markdown describing a checkpoint: what it is, how it was trained, how well it does."""
    name = manifest.get("generator", "?")
    training = manifest.get("training") or {}
    lines = [f"# genkit {name} model", ""]
    lines.append(f"A `{name}` generator ({manifest.get('modality', '?')}) saved by genkit "
                 f"{manifest.get('versions', {}).get('genkit', '?')}.")
    lines += ["", "```bash", "genkit sample --checkpoint . -n 16 --out samples/", "```", ""]
    lines += ["## Training", ""]
    if training:
        for key in ("data", "steps", "batch_size", "lr", "seed", "device", "precision",
                    "num_processes", "seconds", "final_loss"):
            if key in training:
                lines.append(f"- {key.replace('_', ' ')}: {_fmt(training[key])}")
    else:
        lines.append("- not trained with genkit's engine")
    evals = manifest.get("evaluation") or training.get("eval") or {}
    if evals:
        lines += ["", "## Evaluation", ""]
        lines += [f"- {k}: {_fmt(v)}" for k, v in evals.items() if not isinstance(v, dict)]
    lines += ["", "## Config", "", "```json"]
    lines += [json.dumps(manifest.get("config", {}), indent=2), "```", ""]
    return "\n".join(lines)


def write_model_card(directory: Path, manifest: dict[str, Any]) -> None:
    atomic_write_text(Path(directory) / "README.md", render_model_card(manifest))
