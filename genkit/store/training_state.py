"""Training state: everything an exact resume needs, in safetensors and JSON (no pickle).

``training_state/`` inside a training checkpoint holds the online (non-EMA) weights, each
optimizer's tensors, the EMA shadows and the RNG tensors as safetensors, and the rest
(step, settings, optimizer structure, schedulers, grad scaler, Python and NumPy RNG) in
``state.json``. accelerate's ``save_state`` would write pickles (optimizer.bin,
random_states_0.pkl), which genkit never loads; hence this module.

Reading checks everything before it changes anything: damaged, truncated or missing state
is a one-line :class:`CheckpointError`, and the run being resumed is left untouched.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from genkit.contract import GeneratorContract
from genkit.errors import CheckpointError
from genkit.fs import atomic_write_text
from genkit.store.checkpoint import TRAINING_STATE

STATE_FILE = "state.json"


@dataclass
class TrainingParts:
    """The objects whose state a training checkpoint holds."""

    generator: GeneratorContract
    optimizers: Mapping[str, torch.optim.Optimizer]
    schedulers: Mapping[str, Any]
    scaler: Any = None  # torch.amp.GradScaler under fp16, else None


def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state dict into tensors (for safetensors) and JSON."""
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, Any] = {"param_groups": state["param_groups"], "state": {}}
    for pid, entry in state["state"].items():
        plain_entry = {}
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{pid}.{key}"] = value.detach().contiguous().cpu()
                plain_entry[key] = {"tensor": f"{pid}.{key}"}
            else:
                plain_entry[key] = value
        plain["state"][str(pid)] = plain_entry
    return tensors, plain


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], plain: dict[str, Any]) -> dict[str, Any]:
    state = {}
    for pid, entry in plain["state"].items():
        state[int(pid)] = {k: tensors[v["tensor"]] if isinstance(v, dict) and "tensor" in v else v
                           for k, v in entry.items()}
    return {"state": state, "param_groups": plain["param_groups"]}


def _frozen(module: torch.nn.Module) -> set[str]:
    """Names of the parameters training does not change (a LoRA run's base model): they
    are not part of the training state, since the checkpoint's base provides them."""
    return {n for n, p in module.named_parameters(remove_duplicate=False) if not p.requires_grad}


def _module_state(modules: Mapping[str, torch.nn.Module]) -> dict[str, torch.Tensor]:
    # clone: tied weights (GPT-2's wte/lm_head) share memory, which safetensors refuses
    return {f"{name}.{k}": v.detach().cpu().clone()
            for name, m in modules.items() for k, v in m.state_dict().items()
            if k not in _frozen(m)}


def write_training_state(directory: Path, parts: TrainingParts, meta: dict[str, Any]) -> None:
    """Write ``training_state/`` into checkpoint ``directory`` (a temporary one, renamed
    into place by the caller). ``meta`` (step, settings) goes into ``state.json``."""
    g = parts.generator
    state_dir = directory / TRAINING_STATE
    state_dir.mkdir()
    save_file(_module_state(g.modules()), str(state_dir / "online.safetensors"))
    meta = {**meta, "optimizers": {}, "schedulers": {}, "ema": {}}
    for name, opt in parts.optimizers.items():
        tensors, plain = _flatten_optimizer(opt.state_dict())
        save_file(tensors, str(state_dir / f"optimizer-{name}.safetensors"))
        meta["optimizers"][name] = plain
        meta["schedulers"][name] = parts.schedulers[name].state_dict()
    for name, ema in (g.ema or {}).items():
        params = dict(g.modules()[name].named_parameters())
        save_file({k: s.detach().contiguous().cpu() for k, s in zip(params, ema.shadow_params)},
                  str(state_dir / f"ema-{name}.safetensors"))
        meta["ema"][name] = {"optimization_step": ema.optimization_step, "decay": ema.decay}
    meta["scaler"] = parts.scaler.state_dict() if parts.scaler is not None else None
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng.update({f"cuda{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    save_file(rng, str(state_dir / "rng.safetensors"))
    py = random.getstate()
    meta["python_rng"] = [py[0], list(py[1]), py[2]]
    np_state = np.random.get_state()
    meta["numpy_rng"] = [np_state[0], np_state[1].tolist(), *np_state[2:]]
    atomic_write_text(state_dir / STATE_FILE, json.dumps(meta) + "\n")


def read_training_meta(directory: Path) -> dict[str, Any]:
    """``state.json`` of a training checkpoint (step and settings), checked, without
    touching any tensor: what a resume needs to know before it builds anything."""
    file = directory / TRAINING_STATE / STATE_FILE
    try:
        meta = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{directory} has no training state; it cannot be resumed: "
                              "start a new run or pick another --out") from None
    except (OSError, ValueError, RecursionError) as exc:
        raise CheckpointError(f"{directory} has damaged training state ({type(exc).__name__}); "
                              "resume from another checkpoint or start a new run") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("step"), int) \
            or isinstance(meta.get("step"), bool) or meta["step"] < 0 \
            or not isinstance(meta.get("args", {}), dict):
        raise CheckpointError(f"{directory} has damaged training state (state.json has no "
                              "valid step); resume from another checkpoint or start a new run")
    return meta


def read_training_state(directory: Path, parts: TrainingParts) -> dict[str, Any]:
    """Restore what :func:`write_training_state` saved and return its ``meta`` (with
    ``"step"``, the step to continue from)."""
    state_dir = directory / TRAINING_STATE
    try:
        loaded = _read_all(state_dir, parts)
    except CheckpointError:
        raise
    except Exception as exc:  # truncated, garbage, missing files or keys, wrong shapes
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
        raise CheckpointError(f"{directory} has damaged training state ({detail}); it cannot "
                              "be resumed: resume from another checkpoint (--resume-from) or "
                              "start a new run") from None
    _apply(loaded, parts)
    return loaded["meta"]


def _read_all(state_dir: Path, parts: TrainingParts) -> dict[str, Any]:
    """Every file of the state, read and checked, before anything is changed."""
    if not (state_dir / STATE_FILE).is_file():
        raise CheckpointError(f"{state_dir.parent} has no training state; it cannot be "
                              "resumed: start a new run or pick another --out")
    meta = json.loads((state_dir / STATE_FILE).read_text(encoding="utf-8"))
    if not isinstance(meta, dict) or not isinstance(meta.get("step"), int) or meta["step"] < 0:
        raise ValueError("state.json has no valid step")
    g = parts.generator
    online = load_file(str(state_dir / "online.safetensors"))
    modules = {}
    for name, module in g.modules().items():
        prefix = f"{name}."
        state = {k[len(prefix):]: v for k, v in online.items() if k.startswith(prefix)}
        frozen = _frozen(module)
        expected = {k: v for k, v in module.state_dict().items() if k not in frozen}
        if set(state) != set(expected) or any(state[k].shape != expected[k].shape for k in state):
            raise ValueError(f"the online weights of {name!r} do not match the model")
        modules[name] = state
    optimizers = {name: _unflatten_optimizer(
        load_file(str(state_dir / f"optimizer-{name}.safetensors")), meta["optimizers"][name])
        for name in parts.optimizers}
    schedulers = {name: meta["schedulers"][name] for name in parts.optimizers}
    emas = {}
    for name in g.ema or {}:
        shadow = load_file(str(state_dir / f"ema-{name}.safetensors"))
        emas[name] = ([shadow[n] for n, _ in g.modules()[name].named_parameters()],
                      int(meta["ema"][name]["optimization_step"]))
    rng = load_file(str(state_dir / "rng.safetensors"))
    if "torch" not in rng:
        raise KeyError("rng.safetensors has no 'torch' state")
    return {"meta": meta, "modules": modules, "optimizers": optimizers,
            "schedulers": schedulers, "emas": emas, "rng": rng}


def _apply(loaded: dict[str, Any], parts: TrainingParts) -> None:
    g, meta = parts.generator, loaded["meta"]
    for name, module in g.modules().items():
        missing, _ = module.load_state_dict(loaded["modules"][name], strict=False)
        if set(missing) - _frozen(module):  # checked in _read_all; a guard, not a path
            raise CheckpointError(f"training state lacks {sorted(missing)[:3]}")
    for name, opt in parts.optimizers.items():
        opt.load_state_dict(loaded["optimizers"][name])
        parts.schedulers[name].load_state_dict(loaded["schedulers"][name])
    for name, ema in (g.ema or {}).items():
        shadow, optimization_step = loaded["emas"][name]
        device = ema.shadow_params[0].device if ema.shadow_params else "cpu"
        ema.shadow_params = [s.to(device) for s in shadow]
        ema.optimization_step = optimization_step
    if parts.scaler is not None and meta.get("scaler"):
        parts.scaler.load_state_dict(meta["scaler"])
    rng = loaded["rng"]
    torch.set_rng_state(rng["torch"])
    if torch.cuda.is_available():
        cuda = [rng[k] for k in sorted(k for k in rng if k.startswith("cuda"))]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
    py = meta["python_rng"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    np_rng = meta["numpy_rng"]
    np.random.set_state((np_rng[0], np.asarray(np_rng[1], dtype=np.uint32), *np_rng[2:]))
