"""How ``rad eval`` scores worlds (:class:`EvalSettings`), torch-free so that the command line is
built from it (:mod:`world_model.options`) without importing torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass
class EvalSettings:
    """Every field is an option of ``rad eval`` (the world directories, the data, the report
    directory and the IDM are its other arguments)."""

    steps: int | None = None
    """Sampler steps per frame (default: each world's sampler.json, else 10)."""
    eta: float | None = None
    """DDIM eta (default: each world's sampler.json, else 0)."""
    sampler: Literal["ddim", "heun"] | None = None
    """Sampler kind (default: each world's sampler.json, else ddim)."""
    context_level: int | None = None
    """Noise level of the context frames (worlds trained with augmented context; default: each
    world's sampler.json, else its training default)."""
    reencode: bool | None = None
    """Decode and re-encode every generated frame before it joins the context
    (``SamplerConfig.reencode``; default: each world's sampler.json, else off)."""
    batch: int = 16
    """Trajectories imagined together in one batched engine call."""
    seed: int = 0
    """Sampling seed (trajectory i: a seed derived from it and i)."""
    device: str = "cpu"
    """Device of the worlds: auto (CUDA if present), cpu, cuda, ..."""
    dtype: str = "auto"
    """Compute dtype of the network: auto (bfloat16 where the device computes it natively, else
    float32), float32, bfloat16 (autocast; state in float32), float16."""
    compile: bool = False
    """``torch.compile`` the engine's frame pass (``RolloutEngine(compile=True)``; falls back to
    eager where compilation is unavailable): to score the compiled engine's rollouts."""
    max_trajectories: int | None = None
    """Use only the first N trajectories (default: all)."""
    horizon: int | None = None
    """Return-part horizon H (default: the largest checkpoint horizon)."""
    lpips_weights: str | None = None
    """Torchvision AlexNet weights for LPIPS (else $RAD_LPIPS_WEIGHTS or the torch hub cache;
    LPIPS is reported unavailable without them)."""
    videos: int = 4
    """Side-by-side videos written for the first this many trajectories (lockstep: episodes in
    the picture)."""
    fps: int = 8
    """Frames per second of those videos."""
    save_frames: bool = False
    """Also write every generated frame to OUT/frames/<checkpoint>.npz."""
    protocol: Literal["outbound-return", "predict", "lockstep"] = "outbound-return"
    """outbound-return: Memory Maze trajectories of rad make-evalset; predict: context-then-predict
    with revisits on plain held-out episodes (Crafter, MineRL, gym:ENV_ID; docs/envs.md);
    lockstep: the first --context-frames of held-out episodes, then --predict-frames under their
    recorded actions, judged by --idm (action fidelity, realism; docs/rollout.md)."""
    context_frames: int = 48
    """predict, lockstep: real context frames per clip."""
    predict_frames: int = 48
    """predict, lockstep: generated frames per clip."""
    clip: Literal["revisits", "start"] = "revisits"
    """predict: the clip of each episode with the most revisits, or its first frames."""
