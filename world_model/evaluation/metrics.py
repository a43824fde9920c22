"""Frame metrics of the evaluation protocol: PSNR and SSIM (scikit-image), LPIPS (torchmetrics).

All functions take frames ``(F, H, W, 3) uint8`` and return one value per frame ``(F,)`` float64.

LPIPS needs ImageNet-pretrained AlexNet weights, which are never downloaded here. torchmetrics
ships LPIPS's own linear calibration layers; the AlexNet backbone is loaded from a local torchvision
state-dict file (``alexnet-owt-7be5be79.pth``): ``--lpips-weights PATH``, else the environment
variable ``RAD_LPIPS_WEIGHTS``, else torch's hub cache (``$TORCH_HOME/hub/checkpoints``). Without
them (or without torchvision) LPIPS is *unavailable*, said so with the reason, and no other number
stands in for it.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

#: PSNR of two identical frames is infinite; it is capped here so that means stay finite.
PSNR_CAP_DB = 100.0
ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
LPIPS_ENV = "RAD_LPIPS_WEIGHTS"


def _check_pair(real: np.ndarray, pred: np.ndarray) -> None:
    if real.shape != pred.shape or real.ndim != 4 or real.shape[-1] != 3:
        raise ValueError(f"frames must both be (F, H, W, 3), got {real.shape} and {pred.shape}")
    if real.dtype != np.uint8 or pred.dtype != np.uint8:
        raise ValueError(f"frames must be uint8, got {real.dtype} and {pred.dtype}")


def psnr(real: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Per-frame PSNR in dB (data range 255), capped at :data:`PSNR_CAP_DB`."""
    from skimage.metrics import peak_signal_noise_ratio

    _check_pair(real, pred)
    out = np.empty(len(real))
    for i, (a, b) in enumerate(zip(real, pred)):
        out[i] = (PSNR_CAP_DB if np.array_equal(a, b)
                  else min(peak_signal_noise_ratio(a, b, data_range=255), PSNR_CAP_DB))
    return out


def ssim(real: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Per-frame SSIM over RGB (scikit-image defaults: 7x7 uniform window, data range 255)."""
    from skimage.metrics import structural_similarity

    _check_pair(real, pred)
    return np.array([structural_similarity(a, b, channel_axis=-1, data_range=255)
                     for a, b in zip(real, pred)], dtype=np.float64)


def lpips_weights_path(path: str | os.PathLike | None = None) -> Path:
    """Where the AlexNet backbone weights are looked for (see the module docstring)."""
    if path:
        return Path(path)
    if os.environ.get(LPIPS_ENV):
        return Path(os.environ[LPIPS_ENV])
    torch_home = os.environ.get("TORCH_HOME",
                                os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "torch"))
    return Path(torch_home).expanduser() / "hub" / "checkpoints" / ALEXNET_FILE


LPIPSFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def load_lpips(weights: str | os.PathLike | None = None, device: str = "cpu",
               batch: int = 64) -> tuple[LPIPSFn | None, str]:
    """LPIPS (AlexNet) as ``fn(real, pred) -> (F,)``, or ``(None, reason)`` when unavailable.

    Returns ``(fn, description)`` on success; ``description`` names the weights file used.
    """
    if importlib.util.find_spec("torchvision") is None:
        return None, "unavailable: torchvision is not installed (LPIPS's AlexNet comes from it)"
    path = lpips_weights_path(weights)
    if not path.is_file():
        return None, (f"unavailable: no AlexNet weights at {path} (pass --lpips-weights FILE or "
                      f"set {LPIPS_ENV}; file {ALEXNET_FILE} from torchvision)")
    import torch

    from world_model.latents import frames_to_float

    try:
        from torchmetrics.functional.image.lpips import _LPIPS

        net = _LPIPS(net="alex", pretrained=True, pnet_rand=True)  # calibration layers: shipped
        state = torch.load(str(path), map_location="cpu", weights_only=True)
        backbone = {}
        for key in net.net.state_dict():  # "slice{k}.{i}.weight" <- torchvision "features.{i}.weight"
            backbone[key] = state["features." + key.split(".", 1)[1]]
        net.net.load_state_dict(backbone, strict=True)
    except (OSError, RuntimeError, KeyError, ValueError, TypeError, ImportError,
            AttributeError, IndexError) as exc:  # a wrong file, or torchmetrics internals moved
        return None, f"unavailable: could not build LPIPS from {path} ({type(exc).__name__}: {exc})"
    net = net.eval().requires_grad_(False).to(device)

    def fn(real: np.ndarray, pred: np.ndarray) -> np.ndarray:
        _check_pair(real, pred)
        out = []
        with torch.no_grad():
            for i in range(0, len(real), batch):
                a, b = (frames_to_float(torch.from_numpy(np.ascontiguousarray(x[i:i + batch]))
                                        .to(device)) for x in (real, pred))
                out.append(net(a, b).flatten().double().cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0)

    logger.info("LPIPS (AlexNet) from %s", path)
    return fn, f"AlexNet LPIPS, backbone weights {path}"
