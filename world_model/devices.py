"""Device and compute-dtype names -> torch objects, with errors that say what to pass instead.

The one place that reads ``"auto"``, ``"cpu"``, ``"cuda:1"``, ``"bfloat16"``, ...: the trainers,
the rollout engine's callers, the commands and ``rad_env`` all resolve through here.
"""

from __future__ import annotations

import torch

from world_model.errors import UserError

#: Compute dtypes by name (the network runs under ``torch.autocast`` in the lower ones).
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(device: str | torch.device | None = "auto", local_rank: int = 0) -> torch.device:
    """``"auto"``/None: CUDA when present (GPU ``local_rank`` modulo the GPUs: one per torchrun
    process), else the CPU; otherwise ``torch.device(device)``.

    Raises:
        UserError: not a device name, or a CUDA device on a machine without CUDA.
    """
    if device in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise UserError(f"device {device!r}: not a torch device ({exc}); use auto, cpu, "
                        f"cuda or cuda:N") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {device!r}: CUDA is not available on this machine; use cpu "
                        f"or auto")
    return resolved


def resolve_dtype(dtype: str | torch.dtype, device: torch.device | str = "cpu") -> torch.dtype:
    """``"float32"``, ``"bfloat16"``, ``"float16"`` (or that torch dtype) -> the torch dtype;
    ``"auto"``: bfloat16 where ``device`` computes it natively (:func:`native_bf16`), else float32."""
    if isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dtype
    if dtype == "auto":
        return DTYPES[resolve_precision("auto", device)]
    if dtype not in DTYPES:
        raise UserError(f"dtype={dtype!r}: expected auto or one of {list(DTYPES)}")
    return DTYPES[dtype]


def native_bf16(device: torch.device | str = "cpu") -> bool:
    """Whether ``device`` computes bfloat16 natively (faster than float32): a CUDA GPU that
    supports it, or a CPU with the ``avx512_bf16`` or ``amx_bf16`` instructions (read from
    ``/proc/cpuinfo``; elsewhere, or on a CPU without them, bfloat16 is emulated and slower)."""
    device = torch.device(device)
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device.type != "cpu":
        return False
    return bool(_cpu_flags() & {"avx512_bf16", "amx_bf16"})


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def resolve_precision(precision: str, device: torch.device | str = "cpu") -> str:
    """``"auto"`` -> ``"bfloat16"`` where :func:`native_bf16`, else ``"float32"``; other names
    (``"float32"``, ``"bfloat16"``) unchanged."""
    if precision == "auto":
        return "bfloat16" if native_bf16(device) else "float32"
    if precision not in ("float32", "bfloat16"):
        raise UserError(f"precision={precision!r}: expected auto, float32 or bfloat16")
    return precision
