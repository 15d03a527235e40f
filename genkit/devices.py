"""Device and precision choice: ``auto`` picks cuda, then mps, then cpu."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from genkit.errors import DeviceError

if TYPE_CHECKING:
    import torch

PRECISIONS = ("auto", "no", "fp16", "bf16")


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
    """``precision`` if the device supports it, else a DeviceError saying what to use;
    ``auto`` is bf16 on a CUDA GPU that supports it (tensor cores, half the memory
    traffic) and ``no`` (fp32) elsewhere."""
    import torch

    if precision == "auto":
        return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "no"
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


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, where the OS has one)."""
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def choose_threads(requested: int | None = None, processes: int = 1) -> int:
    """torch's intra-op threads: ``requested``, else ``OMP_NUM_THREADS``, else the cores
    this process may use, shared by ``processes`` and less what other work keeps busy
    (the 1-minute load average). Oversubscribed threads on a loaded machine made tiny
    models tens of times slower; one thread per free core does not."""
    import os

    if requested is not None:
        if requested < 1:
            raise DeviceError(f"--threads must be at least 1, got {requested}")
        return requested
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    cores = available_cores()
    share = max(1, cores // max(1, processes))
    try:
        busy = os.getloadavg()[0]
    except (AttributeError, OSError):
        busy = 0.0
    free = max(1, int(cores - busy + 0.5))
    return max(1, min(share, free))


def apply_threads(requested: int | None = None, processes: int = 1) -> int:
    """Set torch's intra-op threads by :func:`choose_threads`; returns the number."""
    import torch

    threads = choose_threads(requested, processes)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads
