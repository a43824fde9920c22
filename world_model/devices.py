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


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """``"float32"``, ``"bfloat16"``, ``"float16"`` (or that torch dtype) -> the torch dtype."""
    if isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dtype
    if dtype not in DTYPES:
        raise UserError(f"dtype={dtype!r}: expected one of {list(DTYPES)}")
    return DTYPES[dtype]
