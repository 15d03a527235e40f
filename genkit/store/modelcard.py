"""The ``README.md`` model card written into every checkpoint directory.

The card is a Hugging Face ``ModelCard``: YAML metadata the Hub indexes (``library_name:
genkit``, ``pipeline_tag``, ``tags: [genkit, <family>, ...]``, ``base_model`` of a
fine-tune, ``datasets``, evaluation figures as ``model-index``), then Markdown for people:
what the model is, how to sample it with genkit, how to open it *without* genkit, how it
was trained and how well it does. Everything comes from ``genkit.json``, so a card is
rendered again whenever the figures change (``genkit eval``) or the checkpoint is pushed
(``genkit push``, which names the repo in the snippets).

The plain-library recipe is the plugin's: the contract hook
``model_card_details(manifest, where) -> {"pipeline_tag", "tags", "usage"}``, where
``where`` is the repo id or folder the snippet should load from.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from genkit.discovery.registry import get_registry
from genkit.fs import atomic_write_text
from genkit.hub import hub_id_of, parse_model_id

#: the Hub's pipeline tag for a family that says nothing itself, by modality
DEFAULT_PIPELINE_TAGS = {"image": "unconditional-image-generation", "text": "text-generation"}
LOCAL_PLACEHOLDER = "path/to/this/checkpoint"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def plugin_details(manifest: dict[str, Any], where: str) -> dict[str, Any]:
    """What the generator's plugin says about its card (``model_card_details``), or {}
    when it says nothing or cannot be asked (a card never fails a save)."""
    try:
        cls = get_registry().generator(str(manifest.get("generator"))).load_class()
        return dict(cls.model_card_details(manifest, where))
    except Exception:  # noqa: BLE001 - a broken plugin hook only costs the recipe
        return {}


def _figures(manifest: dict[str, Any]) -> dict[str, float]:
    """Evaluation figures: ``genkit eval``'s, else the training run's held-out ones."""
    training = manifest.get("training") or {}
    evals = manifest.get("evaluation") or training.get("eval") or {}
    return {k: float(v) for k, v in evals.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


def card_metadata(manifest: dict[str, Any], details: dict[str, Any],
                  repo_id: str | None = None) -> dict[str, Any]:
    """The card's YAML metadata as a dict (see the module docstring)."""
    from huggingface_hub import EvalResult, ModelCardData  # lazy: kept out of start-up

    name = str(manifest.get("generator", "?"))
    config = manifest.get("config") or {}
    training = manifest.get("training") or {}
    pipeline_tag = details.get("pipeline_tag") or DEFAULT_PIPELINE_TAGS.get(
        str(manifest.get("modality")))
    tags = ["genkit", name] + [t for t in details.get("tags", []) if t not in ("genkit", name)]
    base = hub_id_of(config.get("base")) if isinstance(config.get("base"), str) else None
    data = str(training.get("data") or "")
    dataset = parse_model_id(data[3:]) if data.startswith("hf:") else None
    figures = _figures(manifest)
    results = [EvalResult(task_type=pipeline_tag or name, dataset_type=data or "unknown",
                          dataset_name=data or "unknown", dataset_split="test",
                          metric_type=key, metric_name=key, metric_value=value)
               for key, value in figures.items()] if figures else None
    card = ModelCardData(library_name="genkit", pipeline_tag=pipeline_tag, tags=tags,
                         base_model=base.repo if base else None,
                         datasets=[dataset.repo] if dataset else None, eval_results=results,
                         model_name=(repo_id or f"genkit-{name}") if results else None)
    meta = card.to_dict()
    if base:
        meta["base_model_relation"] = "adapter" if config.get("lora_rank") else "finetune"
    return meta


def render_model_card(manifest: dict[str, Any], repo_id: str | None = None) -> str:
    """The card of a checkpoint: YAML metadata, then what it is, how it was trained, how
    well it does and how to open it; ``repo_id`` names it in the loading snippets."""
    import yaml  # lazy: with huggingface_hub, kept out of start-up

    where = repo_id or LOCAL_PLACEHOLDER
    details = plugin_details(manifest, where)
    meta = card_metadata(manifest, details, repo_id)
    name = manifest.get("generator", "?")
    training = manifest.get("training") or {}
    config = manifest.get("config") or {}
    lines = ["---", yaml.safe_dump(meta, sort_keys=False).rstrip(), "---", "",
             f"# genkit {name} model", ""]
    what = f"A `{name}` generator ({manifest.get('modality', '?')}) saved by genkit " \
           f"{manifest.get('versions', {}).get('genkit', '?')}"
    if config.get("base"):
        kind = f"a LoRA adapter (rank {config.get('lora_rank')})" if config.get("lora_rank") \
            else "a full fine-tune"
        what += f", {kind} of `{config['base']}`"
    lines += [what + ".", "", "```bash", f"genkit sample --checkpoint {repo_id or '.'} -n 16 "
              "--out samples/", "```", ""]
    if details.get("usage"):
        lines += ["## Use it without genkit", "", str(details["usage"]).strip(), ""]
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
    lines += [json.dumps(config, indent=2), "```", ""]
    return "\n".join(lines)


def write_model_card(directory: Path, manifest: dict[str, Any]) -> None:
    atomic_write_text(Path(directory) / "README.md", render_model_card(manifest))
