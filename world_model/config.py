"""Typed, frozen configuration of the world, saved beside the weights it built, and how it is read.

``ModelConfig`` describes the network, ``DiffusionConfig`` the noise schedule and objective,
``LatentConfig`` the frame codec, ``TrainConfig`` the training run. ``RunConfig`` groups them; it is
what ``config.json`` in a run directory holds, with a format version so an incompatible file is
refused with a clear message (a field that moved section is moved back on load:
:data:`MOVED_FIELDS`). ``SamplerConfig`` says how frames are sampled from a trained world.

:func:`world_model.configs.resolve_config` is the one reader of a preset name or JSON file plus ``--set
section.field=value`` overrides (``rad train``, the benchmarks). Each command's run options that
are not saved with the weights (``TrainOptions``, ``VAETrainConfig``, ``EvalSettings``) live beside
the loop they drive, one dataclass per script.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from world_model.errors import CheckpointError, UserError, require

#: Version of the config.json layout. Bump on incompatible changes.
CONFIG_VERSION = 1

MemoryType = Literal["lstm", "mamba2", "ttt", "none"]
ModeType = Literal["frame", "chunk"]
PrevFrameType = Literal["none", "input", "residual"]
ContextType = Literal["independent", "clean", "augmented"]


@dataclass(frozen=True)
class ModelConfig:
    """The RAD network (paper Sec. 4.1): a DiT over per-frame latents with a memory block per layer."""

    latent_channels: int = 4
    """Channels C of one frame's latent (3 in pixel space, 4 for a Stable-Diffusion-style VAE)."""
    latent_size: int = 16
    """Spatial size h = w of one frame's latent (64 in pixel space)."""
    patch_size: int = 2
    """Patch side p: a frame becomes N = (latent_size / p)**2 tokens."""
    width: int = 256
    """Token width D."""
    depth: int = 6
    """Number of RAD layers L."""
    heads: int = 4
    """Attention heads (spatial and temporal); D must divide by it and D/heads be even (RoPE)."""
    mlp_ratio: float = 4.0
    """Hidden width of the MLP relative to D."""
    num_actions: int = 6
    """Size of the discrete action set."""
    window: int = 20
    """Attention window W in frames (paper: 20)."""
    mode: ModeType = "frame"
    """'frame': banded causal window sliding one frame (RAD-f); 'chunk': block-causal windows (RAD-c)."""
    memory: MemoryType = "lstm"
    """Memory block: 'lstm' (main), 'mamba2', 'ttt', or 'none' (the Diffusion Forcing baseline)."""
    memory_hidden: int = 256
    """Memory width: LSTM hidden size, Mamba2 inner width, TTT total head width."""
    memory_action_dim: int = 32
    """Width of the projected action concatenated into the memory input (paper Sec. 6.1); 0 disables."""
    mamba_state: int = 16
    """Mamba2 SSM state size per head."""
    mamba_heads: int = 4
    """Mamba2 heads (memory_hidden must divide by it)."""
    mamba_conv: int = 4
    """Mamba2 causal convolution kernel."""
    ttt_heads: int = 4
    """TTT-linear heads (memory_hidden must divide by it)."""
    ttt_lr: float = 1.0
    """Base inner-loop learning rate of TTT-linear (scaled per step by a learned sigmoid gate)."""
    reward_head: bool = True
    """Predict the reward of each frame and whether it ends the episode (heads on pooled features)."""
    prev_frame: PrevFrameType = "none"
    """The previous context frame at full resolution, given to every token of the next frame
    (DIAMOND and GameNGen stack context frames as channels): 'none'; 'input': its patch is stacked
    into each token's input; 'residual': stacked, and the network's output is added to it, so the
    prediction starts as a copy of the previous frame (x0-prediction only). A frame whose previous
    frame is outside its window (the first frame, a chunk's first frame) gets zeros."""

    @property
    def grid(self) -> int:
        return self.latent_size // self.patch_size

    @property
    def tokens_per_frame(self) -> int:
        return self.grid**2

    @property
    def head_dim(self) -> int:
        return self.width // self.heads

    @property
    def horizon(self) -> int:
        """Frames whose pixels can reach a prediction through attention alone (the frame itself
        included). Frame mode stacks ``depth`` banded windows, and cached keys of context frames
        carry their own windows, so it is ``depth * (window - 1) + 1``; chunk mode never crosses a
        chunk boundary, so it is ``window``. Older frames reach a prediction only via the memory."""
        return self.depth * (self.window - 1) + 1 if self.mode == "frame" else self.window

    def validate(self) -> ModelConfig:
        need = functools.partial(require, what="invalid ModelConfig")

        need(self.memory in ("lstm", "mamba2", "ttt", "none"), f"memory={self.memory!r}")
        need(self.mode in ("frame", "chunk"), f"mode={self.mode!r}")
        need(self.latent_size % self.patch_size == 0, "latent_size must divide by patch_size")
        need(self.width % self.heads == 0, "width must divide by heads")
        need(self.head_dim % 4 == 0, "width/heads must divide by 4 (2D RoPE)")
        need(self.window >= 1, "window must be >= 1")
        need(self.depth >= 1 and self.num_actions >= 1, "depth and num_actions must be >= 1")
        need(self.prev_frame in ("none", "input", "residual"), f"prev_frame={self.prev_frame!r}")
        if self.memory == "mamba2":
            need(self.memory_hidden % self.mamba_heads == 0, "memory_hidden % mamba_heads != 0")
        if self.memory == "ttt":
            need(self.memory_hidden % self.ttt_heads == 0, "memory_hidden % ttt_heads != 0")
        return self


@dataclass(frozen=True)
class DiffusionConfig:
    """Noise schedule and objective (diffusion forcing: an independent level per frame)."""

    num_levels: int = 1000
    """Number of noise levels K; level 0 is the clean frame, level K pure noise."""
    schedule: Literal["cosine", "linear"] = "cosine"
    prediction: Literal["v", "eps", "x0"] = "v"
    """What the network predicts. 'x0' when a token carries more values than the width (pixel
    presets: Li & He 2025, "Back to Basics"); 'v' (as DF and VRAG) or 'eps' for narrow latents."""
    loss_space: Literal["prediction", "v"] = "prediction"
    """Where the MSE is taken: 'prediction' (on what the network outputs), or 'v' (on the v
    implied by the output, as JiT trains x-prediction: for x0 that is the x0 error weighted by
    ``1 / max(sigma, v_loss_min_sigma)**2``)."""
    v_loss_min_sigma: float = 0.05
    """Clamp of sigma in the v-space loss weight, so nearly clean levels do not dominate."""
    skip_sigma: float = 0.0
    """x0-prediction only, 0 = off: the predicted x0 is ``w_x x_t + w_out output`` with
    ``w_x = a d^2 / (s^2 + a^2 d^2)``, ``w_out = s^2 / (s^2 + a^2 d^2)``, ``d = skip_sigma`` (EDM's
    skip connection in VP terms): nearly clean inputs pass through; docs/model.md."""
    level_sampling: Literal["uniform", "logit_normal"] = "uniform"
    """Training noise levels: uniform on ``1..K``, or ``ceil(K * sigmoid(N(level_mean,
    level_std)))`` (logit-normal; a positive mean focuses on mid and high noise)."""
    level_mean: float = 0.0
    level_std: float = 1.0
    clean_prob: float = 0.1
    """Probability that a training frame is left clean (level 0), as context frames are at
    inference ('independent' context only)."""
    context: ContextType = "independent"
    """What the context of a training frame looks like. 'independent': diffusion forcing, every
    frame at its own level and attending to the noisy frames of its window (the paper).
    'clean': teacher forcing exactly as the rollout engine runs: every noisy frame attends to the
    clean keys/values of its window (a clean stream of the same banded pass at level 0).
    'augmented': as 'clean', with the context noised to a random level in ``0..context_level_max``
    carried in its conditioning; the engine noises its context to ``context_level``."""
    context_level_max: int = 100
    """'augmented': the highest context noise level drawn in training."""
    context_level: int = 20
    """'augmented': the context noise level the rollout engine uses."""
    history_noise_max: int = 0
    """'independent' only: in training, the latents the memory's pre-fetch reads and the previous
    frame stacked into each frame's tokens (``ModelConfig.prev_frame``) are noised, each frame to
    its own random level in ``0..history_noise_max``, as the world's own imperfect frames are when
    it runs; the targets stay clean. 0: both read the clean latents (the paper)."""

    def validate(self) -> DiffusionConfig:
        need = functools.partial(require, what="invalid DiffusionConfig")

        need(self.num_levels >= 1, "num_levels must be >= 1")
        need(self.schedule in ("cosine", "linear"), f"schedule={self.schedule!r}")
        need(self.prediction in ("v", "eps", "x0"), f"prediction={self.prediction!r}")
        need(self.loss_space in ("prediction", "v"), f"loss_space={self.loss_space!r}")
        need(self.v_loss_min_sigma > 0, "v_loss_min_sigma must be > 0")
        need(self.skip_sigma >= 0, "skip_sigma must be >= 0")
        need(self.skip_sigma == 0 or self.prediction == "x0", "skip_sigma needs prediction='x0'")
        need(self.level_sampling in ("uniform", "logit_normal"),
             f"level_sampling={self.level_sampling!r}")
        need(self.level_std > 0, "level_std must be > 0")
        need(0.0 <= self.clean_prob < 1.0, "clean_prob must be in [0, 1)")
        need(self.context in ("independent", "clean", "augmented"), f"context={self.context!r}")
        need(0 <= self.context_level <= self.num_levels, "context_level must be in [0, num_levels]")
        need(0 <= self.context_level_max <= self.num_levels,
             "context_level_max must be in [0, num_levels]")
        need(0 <= self.history_noise_max <= self.num_levels,
             "history_noise_max must be in [0, num_levels]")
        need(self.history_noise_max == 0 or self.context == "independent",
             "history_noise_max needs context='independent'")
        return self

    @property
    def engine_context_level(self) -> int:
        """The noise level of context frames in the rollout engine (0 unless 'augmented')."""
        return self.context_level if self.context == "augmented" else 0


@dataclass(frozen=True)
class LatentConfig:
    """Where frame latents come from."""

    kind: Literal["pixels", "vae"] = "pixels"
    """'pixels': the frame scaled to [-1, 1]; 'vae': a diffusers AutoencoderKL (no temporal compression)."""
    vae_path: str | None = None
    """Directory of a local diffusers AutoencoderKL (config.json + weights). Copied into the run."""
    frame_size: int = 64
    """Side of the square RGB frames (Memory Maze: 64)."""


@dataclass(frozen=True)
class TrainConfig:
    """One training run."""

    seq_len: int = 32
    """Frames per training sample T (paper: 1001 on Maze)."""
    batch_size: int = 8
    steps: int = 10000
    lr: float = 3e-4
    weight_decay: float = 0.01
    warmup_steps: int = 200
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    val_fraction: float = 0.05
    val_batches: int = 4
    log_every: int = 20
    val_every: int = 500
    checkpoint_every: int = 500
    num_workers: int = 2
    seed: int = 0
    max_nonfinite: int = 20
    """Stop with an error after this many consecutive non-finite losses (each one is skipped)."""
    detach_every: int = 0
    """Truncate backprop through the memory every this many frames (0: never)."""
    carry_chunks: int = 1
    """Truncated backpropagation through time across samples: each batch row follows one stretch
    of ``carry_chunks * seq_len`` frames of an episode, ``seq_len`` frames a step, and the memory
    state after one step's frames is where the next step's pre-fetch starts (detached). The
    memory then reads states written over up to ``carry_chunks * seq_len`` frames, as it does in a
    long rollout, at the cost of a step of ``seq_len`` frames. 1: independent samples, the memory
    starting from zero in each."""
    precision: Literal["auto", "float32", "bfloat16"] = "auto"
    """Compute dtype of the forward pass: 'bfloat16' runs it under ``torch.autocast`` (avx512_bf16
    or AMX CPUs, GPUs) with float32 master weights, optimiser and loss; 'auto' chooses bfloat16
    where the device computes it natively and float32 elsewhere (``devices.native_bf16``: on a
    CPU without bf16 instructions it is emulated and several times slower)."""
    reward_loss_weight: float = 0.1
    """Weight of the reward head's MSE in the training loss."""
    termination_loss_weight: float = 0.01
    """Weight of the termination head's binary cross-entropy in the training loss."""
    env_id: str = "memory-maze-9x9"
    """The real environment the training data came from (``rad train`` reads the files' ``env_id``;
    files that do not say are Memory Maze): what a learned env of this world imitates."""

    def validate(self) -> TrainConfig:
        require(self.precision in ("auto", "float32", "bfloat16"), f"precision={self.precision!r}",
                "invalid TrainConfig")
        require(self.carry_chunks >= 1, f"carry_chunks={self.carry_chunks} (must be >= 1)",
                "invalid TrainConfig")
        return self


@dataclass(frozen=True)
class RunConfig:
    """Everything needed to rebuild a trained world: what ``config.json`` holds."""

    model: ModelConfig = field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    latent: LatentConfig = field(default_factory=LatentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    version: int = CONFIG_VERSION

    def validate(self) -> RunConfig:
        """Checks across sections (each section validates itself when built)."""
        if self.model.prev_frame == "residual" and self.diffusion.prediction != "x0":
            raise UserError("model.prev_frame='residual' adds the network output to the previous "
                            "frame, which only makes sense for diffusion.prediction='x0' (got "
                            f"{self.diffusion.prediction!r}); use prev_frame='input'")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> RunConfig:
        version = data.get("version")
        if version != CONFIG_VERSION:
            raise CheckpointError(
                f"{source}: config format version {version!r} is not supported "
                f"(this rad-env reads version {CONFIG_VERSION})"
            )
        data = _move_fields(data)
        try:
            return cls(
                model=_build(ModelConfig, data.get("model", {}), f"{source}: model"),
                diffusion=_build(DiffusionConfig, data.get("diffusion", {}), f"{source}: diffusion"),
                latent=_build(LatentConfig, data.get("latent", {}), f"{source}: latent"),
                train=_build(TrainConfig, data.get("train", {}), f"{source}: train"),
                version=version,
            ).validate()
        except UserError as exc:
            raise CheckpointError(str(exc)) from exc

    def save(self, path: str | Path) -> None:
        from world_model.io import atomic_write_text

        atomic_write_text(path, json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"{path}: missing config file")
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{path}: not valid JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise CheckpointError(f"{path}: expected a JSON object")
        return cls.from_dict(data, str(path))


#: Fields that moved section: ``(old section, field) -> new section``. Files written before the
#: move still load: the field is moved where it lives now (a value in both places: the new wins).
MOVED_FIELDS = {
    ("diffusion", "reward_loss_weight"): "train",
    ("diffusion", "termination_loss_weight"): "train",
}


def _move_fields(data: dict[str, Any]) -> dict[str, Any]:
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    for (old, name), new in MOVED_FIELDS.items():
        if isinstance(data.get(old), dict) and name in data[old]:
            value = data[old].pop(name)
            data.setdefault(new, {}).setdefault(name, value)
    return data


def _build(cls, values: dict[str, Any], where: str):
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise UserError(f"{where}: unknown field(s) {unknown}")
    obj = cls(**values)
    return obj.validate() if hasattr(obj, "validate") else obj


@dataclass(frozen=True)
class SamplerConfig:
    """How frames are sampled from a trained world (not saved with it: chosen per use)."""

    steps: int = 50
    """Sampler steps per frame (paper: 50 DDIM steps); at most the number of noise levels K."""
    eta: float = 0.0
    """DDIM stochasticity: 0 is deterministic DDIM, 1 the DDPM-like posterior variance."""
    rho: float = 1.0
    """DDIM levels ``K (1 - i / steps) ** rho`` (rounded, strictly decreasing): 1 = even spacing,
    larger puts more steps at low noise."""
    clip: bool = True
    """Clip every predicted x0 to the codec's value range where it has one (pixels: [-1, 1]), as
    diffusers' ``clip_sample``; a sample never leaves the range of real frames."""
    context_level: int | None = None
    """Noise level at which context frames are seen (their keys/values; a defence against
    drift): worlds trained with ``diffusion.context='augmented'`` know the level from their
    conditioning, worlds trained with 'independent' context (diffusion forcing) have seen context
    frames at every level. The previous frame stacked into the tokens stays clean for the latter,
    as in their training. None: the world's ``diffusion.context_level`` for 'augmented' worlds,
    0 (clean) for the others."""
    kind: Literal["ddim", "heun"] = "ddim"
    """'ddim' (one network pass a step) or 'heun' (second order, two passes a step but the last;
    deterministic)."""
    reencode: bool = False
    """Project every generated frame back onto the codec's frames before it joins the context:
    its latent is decoded to uint8 pixels (the observation) and encoded again, so the context
    holds the latent of a picture rather than the sampler's raw output (a defence against
    drift off the autoencoder's latents; one encoder pass a frame)."""

    def validate(self, num_levels: int | None = None) -> SamplerConfig:
        if self.steps < 1:
            raise UserError(f"sampler steps must be >= 1, got {self.steps}")
        if num_levels is not None and self.steps > num_levels:
            raise UserError(f"sampler steps ({self.steps}) exceed the {num_levels} noise levels")
        if self.kind not in ("ddim", "heun"):
            raise UserError(f"sampler kind must be 'ddim' or 'heun', got {self.kind!r}")
        if not 0.0 <= self.eta <= 1.0:
            raise UserError(f"sampler eta must be in [0, 1], got {self.eta}")
        if not self.rho > 0:
            raise UserError(f"sampler rho must be > 0, got {self.rho}")
        if self.context_level is not None and not (
                0 <= self.context_level <= (num_levels if num_levels is not None else 10 ** 9)):
            raise UserError(f"sampler context_level must be in [0, {num_levels}], got "
                            f"{self.context_level}")
        return self
