"""Pretrained causal LMs for gpt: opening a base (a directory or a Hub id), LoRA adapters
on it, and the loading recipe its model card shows.

Kept apart from ``genkit_gpt.generator`` (which trains from scratch and samples) because
everything here is about someone else's model: where it comes from (``resolve_model_path``:
the Hugging Face cache, safetensors only, never remote code), which of its layers an
adapter targets, and how the result opens without genkit (``AutoModelForCausalLM`` for a
full fine-tune, ``PeftModel`` / ``AutoPeftModelForCausalLM`` for an adapter).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch

from genkit.plugin import (
    CheckpointError,
    ConfigError,
    GenkitError,
    check_no_remote_code,
    hub_id_of,
    lora_config,
    quiet_progress,
    resolve_model_path,
)

#: modules LoRA adapts when the user names none, by architecture family (the first
#: family the model has wins): GPT-2 (attention and output projections, Conv1D),
#: Llama / Mistral / Qwen / OPT (attention projections), GPT-NeoX / Falcon / Bloom
DEFAULT_TARGETS = (("c_attn", "c_proj"), ("q_proj", "k_proj", "v_proj", "o_proj"),
                   ("query_key_value", "dense"))
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


def open_pretrained(spec: str | Path, what: str, device: torch.device) -> tuple[Any, Any]:
    """A causal LM and its tokenizer from a local directory or Hub id: offline once
    resolved, safetensors only, no remote code, float32 (a shipped fp16 model is widened
    for the CPU)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory = resolve_model_path(spec, what)
    if not directory.exists():
        raise ConfigError(f"{what} {spec} does not exist (no config.json); give a transformers "
                          "model directory or a Hub id ORG/NAME")
    if not (directory / "config.json").is_file():
        raise ConfigError(f"{what} {spec} is not a transformers model directory "
                          "(no config.json); give a folder written by save_pretrained")
    check_no_remote_code(directory, f"{what} {spec}")
    if not any(directory.glob("*.safetensors")):
        raise ConfigError(f"{what} {spec} has no .safetensors weights; genkit never "
                          "loads pickle: re-save it with save_pretrained(safe_serialization=True)")
    try:
        with quiet_progress():
            model = AutoModelForCausalLM.from_pretrained(directory, local_files_only=True,
                                                         use_safetensors=True, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        first = " ".join(str(exc).split())[:200]
        raise ConfigError(f"cannot open {what} {spec}: {first}") from exc
    return model.to(device), tokenizer


def add_lora(model: Any, config: Any, seed: int) -> Any:
    """``model`` wrapped as a peft ``PeftModelForCausalLM`` with a fresh LoRA adapter (only
    the adapter trains); its random init comes from ``seed``."""
    from peft import get_peft_model

    kind = getattr(model.config, "model_type", "?")
    peft_config = lora_config(model, config.lora_rank, config.lora_alpha, config.lora_dropout,
                              config.lora_targets, DEFAULT_TARGETS,
                              f"base model {config.base} ({kind})", task_type="CAUSAL_LM")
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # peft asks transformers a deprecated name
        torch.manual_seed(seed)
        return get_peft_model(model, peft_config)


def open_adapter(directory: Path, config: Any, device: torch.device) -> tuple[Any, Any]:
    """Base model + the LoRA adapter saved in ``directory`` (trainable, for a resume),
    and the tokenizer saved beside it (else the base's)."""
    from peft import PeftModel
    from transformers import AutoTokenizer

    if not (directory / ADAPTER_CONFIG).is_file():
        raise CheckpointError(f"{directory} has no {ADAPTER_CONFIG}; it is not a LoRA "
                              "checkpoint (was it saved with lora_rank=0?)")
    try:
        model, tokenizer = open_pretrained(config.base, "base model", device)
    except GenkitError as exc:
        raise CheckpointError(f"the LoRA adapter {directory} needs its base model: {exc}") from None
    with quiet_progress():
        model = PeftModel.from_pretrained(model, str(directory), is_trainable=True)
        if (directory / "tokenizer_config.json").is_file():
            tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    return model.to(device), tokenizer


def save_adapter(model: Any, directory: Path, base: str) -> None:
    """``adapter_model.safetensors`` + ``adapter_config.json``, whose base is the Hub id
    (with its revision) or the absolute base directory, so ``AutoPeftModelForCausalLM``
    finds it without genkit."""
    peft_config = model.peft_config["default"]
    model_id = hub_id_of(base)
    peft_config.base_model_name_or_path = (model_id.repo if model_id
                                           else str(Path(base).expanduser().resolve()))
    peft_config.revision = model_id.revision if model_id else None
    with quiet_progress():
        model.save_pretrained(directory, safe_serialization=True)


def foreign_settings(directory: Path) -> dict[str, Any]:
    """gpt config values for a directory written without genkit: a peft adapter (its base
    and LoRA settings from ``adapter_config.json``) or a plain causal LM (``base`` = it)."""
    file = directory / ADAPTER_CONFIG
    if not file.is_file():
        return {"base": str(directory)}
    try:
        info = json.loads(file.read_text(encoding="utf-8"))
        base = info["base_model_name_or_path"]
        targets = info.get("target_modules")
        settings = {"lora_rank": int(info["r"]), "lora_alpha": float(info["lora_alpha"]),
                    "lora_targets": tuple(targets) if isinstance(targets, list) else None}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{file} is damaged or not a LoRA adapter config ({exc})") from None
    if info.get("peft_type") != "LORA" or not base:
        raise CheckpointError(f"{directory} is a {info.get('peft_type')} adapter without a base "
                              "model; genkit opens LoRA adapters of causal LMs")
    revision = info.get("revision")
    return {"base": f"{base}@{revision}" if revision and hub_id_of(base) else base, **settings}


def card_details(manifest: dict[str, Any], where: str) -> dict[str, Any]:
    """pipeline tag, tags and the plain-library loading recipe for a gpt model card."""
    config = manifest.get("config") or {}
    tags = ["transformers", "text-generation"]
    if config.get("lora_rank"):
        tags += ["peft", "lora"]
        usage = (f"```python\nfrom peft import AutoPeftModelForCausalLM\n"
                 f"from transformers import AutoTokenizer\n\n"
                 f"model = AutoPeftModelForCausalLM.from_pretrained(\"{where}\")  # base: "
                 f"{config.get('base')}\ntokenizer = AutoTokenizer.from_pretrained(\"{where}\")\n"
                 f"model = model.merge_and_unload()  # optional: a plain transformers model\n```\n\n"
                 "Or with the base model in hand: `PeftModel.from_pretrained(base_model, "
                 f"\"{where}\")`. `genkit export --merge` writes the merged model.")
    else:
        usage = (f"```python\nfrom transformers import AutoModelForCausalLM, AutoTokenizer, "
                 f"pipeline\n\nmodel = AutoModelForCausalLM.from_pretrained(\"{where}\")\n"
                 f"tokenizer = AutoTokenizer.from_pretrained(\"{where}\")\n"
                 f"text = pipeline(\"text-generation\", model=\"{where}\")(\"The\")\n```")
    return {"pipeline_tag": "text-generation", "tags": tags, "usage": usage}
