"""Device and precision choice: ``auto`` picks cuda, then mps, then cpu."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from genkit.errors import DeviceError

if TYPE_CHECKING:
    import torch

PRECISIONS = ("no", "fp16", "bf16")


def resolve_device(device: Any = "auto") -> torch.device:
    """A ``torch.device`` for ``device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``),
    or a DeviceError when it is not on this machine."""
    import torch

    if isinstance(device, torch.device):
        device = str(device)
    spec = (device or "auto").strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(spec)
    except (RuntimeError, ValueError):
        raise DeviceError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {device!r} asked for, but no CUDA GPU is available; "
                              "use --device cpu or auto")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(f"device {device!r} does not exist: this machine has "
                              f"{torch.cuda.device_count()} CUDA device(s)")
    elif dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise DeviceError(f"device {device!r} asked for, but MPS is not available; use cpu")
    elif dev.type != "cpu":
        raise DeviceError(f"unsupported device {device!r}; use auto, cpu, cuda, cuda:N or mps")
    return dev


def check_precision(precision: str, device: torch.device) -> str:
    """``precision`` if the device supports it, else a DeviceError saying what to use."""
    import torch

    if precision not in PRECISIONS:
        raise DeviceError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    if precision == "fp16" and device.type == "cpu":
        raise DeviceError("fp16 mixed precision needs a GPU; on the CPU use --precision bf16 or no")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise DeviceError("this GPU does not support bf16; use --precision fp16 or no")
    return precision


def device_name(device: torch.device) -> str:
    """A readable name of the hardware behind ``device`` (GPU model, or the CPU)."""
    import platform

    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()
