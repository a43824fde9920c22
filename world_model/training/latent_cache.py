"""Frame latents of a data set, encoded once and cached beside it, so training never runs the
VAE's encoder per step.

Layout: ``DATA/.latents/<vae id>/`` (hidden, so :func:`~world_model.data.format.list_episodes`
never takes it for episodes), one file per episode under the episode's own relative name, holding

    latent    (T, C, h, w) float16   posterior mode times the VAE's scaling_factor
    action    (T,) int64             index of the action that led to each frame
    reward    (T,) float32
    terminal  (T,) bool

and ``cache.json`` (the VAE directory, its id, the latent shape). The id is a hash of the VAE's
``config.json`` and weights, so a retrained VAE never reads another's latents. Files are written
atomically; :func:`encode_data` skips episodes already cached (it resumes), so it can run while
data is still being collected and be run again.

:class:`LatentWindows` draws training windows from the cache held in memory (1001 frames of
8x16x16 latents are 4 MB in float16), with the contract of
:class:`~world_model.data.dataset.EpisodeWindows`: batch ``k`` is a pure function of
``(seed, rank, k)`` and the same windows as the frame loader draws.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import IterableDataset

from world_model.data.checks import EpisodeFile, index_episodes
from world_model.data.format import action_indices, episode_name, list_episodes, read_episode
from world_model.errors import DataError, UserError
from world_model.io import atomic_write, atomic_write_text

logger = logging.getLogger(__name__)

CACHE_DIR = ".latents"
CACHE_FILE = "cache.json"


def vae_id(vae_dir: str | os.PathLike) -> str:
    """12 hex digits of a hash of the VAE's ``config.json`` and ``*.safetensors`` files."""
    h = hashlib.sha256()
    vae_dir = Path(vae_dir)
    for path in [vae_dir / "config.json", *sorted(vae_dir.glob("*.safetensors"))]:
        h.update(path.name.encode())
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:12]


def cache_dir(data_dir: str | os.PathLike, vae_dir: str | os.PathLike) -> Path:
    """Where the latents of ``data_dir`` under the VAE in ``vae_dir`` live."""
    return Path(data_dir) / CACHE_DIR / vae_id(vae_dir)


def cached_path(cache: Path, data_dir: str | os.PathLike, episode: str | os.PathLike) -> Path:
    return cache / episode_name(episode, data_dir)


def _write(path: Path, arrays: dict[str, np.ndarray]) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)  # latents barely compress; speed matters more

    atomic_write(path, write)


@torch.no_grad()
def encode_data(data_dir: str | os.PathLike, vae_dir: str | os.PathLike, *,
                paths: Sequence[Path] | None = None, batch: int = 250,
                progress: Callable[[int, int], None] | None = None) -> Path:
    """Encode every episode under ``data_dir`` (or just ``paths``) not cached yet; returns the
    cache directory. ``progress(done, total)`` after each episode.

    Raises:
        DataError: no usable episode file. CheckpointError: not a VAE directory.
    """
    from world_model.latents import VAECodec

    codec = VAECodec.from_dir(vae_dir)
    cache = cache_dir(data_dir, vae_dir)
    files = index_episodes(list(paths) if paths is not None else list_episodes(data_dir), 1,
                           frame_size=None, refuse_empty=f"{data_dir} (episodes to encode)")
    size = files[0].frame_size
    shape = (codec.channels, size // codec.downsample, size // codec.downsample)
    atomic_write_text(cache / CACHE_FILE, json.dumps(
        {"vae": str(Path(vae_dir).resolve()), "vae_id": cache.name, "latent_shape": list(shape),
         "scaling_factor": codec.scaling}, indent=2) + "\n")
    todo = [f for f in files if not _is_cached(cached_path(cache, data_dir, f.path), f.length)]
    logger.info("%s: %d of %d episodes to encode into %s", data_dir, len(todo), len(files), cache)
    for done, f in enumerate(todo, 1):
        ep = read_episode(f.path)
        frames = torch.from_numpy(ep["image"])
        latent = torch.cat([codec.encode(frames[i:i + batch]) for i in range(0, len(frames), batch)])
        T = len(frames)
        _write(cached_path(cache, data_dir, f.path), {
            "latent": latent.numpy().astype(np.float16),
            "action": action_indices(ep["action"]).astype(np.int64),
            "reward": np.asarray(ep["reward"], dtype=np.float32).reshape(T),
            "terminal": (np.asarray(ep["terminal"]).reshape(T) > 0 if "terminal" in ep
                         else np.zeros(T, bool))})
        if progress is not None:
            progress(done, len(todo))
    return cache


def _is_cached(path: Path, length: int) -> bool:
    if not path.is_file():
        return False
    try:
        with np.load(path) as z:
            return z["latent"].shape[0] == length
    except (OSError, ValueError, KeyError, EOFError):
        return False


class LatentEpisodes:
    """The cached latents of some episode files, in memory."""

    def __init__(self, cache: Path, data_dir: str | os.PathLike, files: Sequence[EpisodeFile]) -> None:
        self.files = tuple(files)
        self.latents, self.actions, self.rewards, self.terminals = [], [], [], []
        missing = []
        for f in self.files:
            path = cached_path(cache, data_dir, f.path)
            try:
                with np.load(path) as z:
                    if z["latent"].shape[0] != f.length:
                        raise ValueError(f"{z['latent'].shape[0]} latents for {f.length} frames")
                    self.latents.append(z["latent"])
                    self.actions.append(z["action"])
                    self.rewards.append(z["reward"])
                    self.terminals.append(z["terminal"])
            except (OSError, ValueError, KeyError, EOFError) as exc:
                missing.append(f"{f.path.name} ({type(exc).__name__}: {exc})")
        if missing:
            raise DataError(f"{cache}: {len(missing)} episode(s) not (or badly) cached, e.g. "
                            f"{missing[:3]}; run `rad encode-latents --data {data_dir} --vae VAE`")


class LatentWindows(IterableDataset):
    """Batches of random windows of cached latents: ``latents (B, T, C, h, w) float32``,
    ``actions (B, T) int64``, ``rewards (B, T) float32``, ``terminals (B, T) bool``,
    ``episode``, ``start`` (B,) int64. Windows are drawn exactly as
    :class:`~world_model.data.dataset.EpisodeWindows` draws them."""

    def __init__(self, episodes: LatentEpisodes, seq_len: int, batch_size: int, seed: int = 0,
                 start_step: int = 0, num_batches: int | None = None, rank: int = 0,
                 world_size: int = 1, chunks: int = 1) -> None:
        from world_model.data.dataset import WindowIndex

        super().__init__()
        if seq_len < 1 or batch_size < 1 or chunks < 1:
            raise UserError(f"seq_len, batch_size and chunks must be >= 1, got {seq_len}, "
                            f"{batch_size}, {chunks}")
        span = seq_len * chunks
        short = [f.path.name for f in episodes.files if f.length < span]
        if short:
            raise UserError(f"episode files shorter than seq_len={seq_len} x chunks={chunks}: "
                            f"{short[:10]}")
        self.episodes, self.seq_len, self.batch_size = episodes, seq_len, batch_size
        self.seed, self.start_step, self.num_batches = seed, start_step, num_batches
        self.rank, self.world_size, self.chunks = rank, world_size, int(chunks)
        self.windows = WindowIndex([f.length for f in episodes.files], span)  # whole stretches

    def set_start_step(self, step: int) -> None:
        self.start_step = int(step)

    def batch(self, step: int) -> dict[str, np.ndarray]:
        from world_model.data.dataset import chunk_of_step

        draw, chunk = chunk_of_step(int(step), self.chunks)
        rng = np.random.default_rng([self.seed, self.rank, draw])
        ep = self.episodes
        out: dict[str, list] = {k: [] for k in ("latents", "actions", "rewards", "terminals",
                                                 "episode", "start")}
        if self.chunks > 1:
            out["chunk"] = [np.int64(chunk)] * self.batch_size
        for _ in range(self.batch_size):
            i, s = self.windows.draw(rng)
            s += chunk * self.seq_len
            e = s + self.seq_len
            out["latents"].append(ep.latents[i][s:e].astype(np.float32))
            out["actions"].append(ep.actions[i][s:e])
            out["rewards"].append(ep.rewards[i][s:e])
            out["terminals"].append(ep.terminals[i][s:e])
            out["episode"].append(np.int64(i))
            out["start"].append(np.int64(s))
        return {k: np.stack(v) for k, v in out.items()}

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        step = self.start_step
        while self.num_batches is None or step < self.num_batches:
            yield {k: torch.from_numpy(v) for k, v in self.batch(step).items()}
            step += 1


def make_latent_loaders(data_dir: str | os.PathLike, vae_dir: str | os.PathLike, seq_len: int,
                        batch_size: int, val_fraction: float = 0.05, seed: int = 0, *,
                        start_step: int = 0, rank: int = 0, world_size: int = 1,
                        val_batches: int | None = None, frame_size: int | None = None,
                        num_actions: int | None = None, chunks: int = 1,
                        progress: Callable[[int, int], None] | None = None):
    """Train and validation loaders of cached latents (the split, checks and windows of
    :func:`~world_model.data.dataset.make_dataloaders`); episodes not cached yet are encoded
    first (``progress``). Returns ``(train, val or None)`` DataLoaders of dicts of tensors."""
    from torch.utils.data import DataLoader

    from world_model.data.dataset import split_episodes

    train_paths, val_paths = split_episodes(list_episodes(data_dir), val_fraction, data_dir)
    check = {"frame_size": frame_size, "num_actions": num_actions}
    train_files = index_episodes(train_paths, seq_len * chunks, **check,
                                 refuse_empty=f"{data_dir} (training episode files)")
    val_files = index_episodes(val_paths, seq_len * chunks, **check) if val_paths else []
    cache = encode_data(data_dir, vae_dir, paths=[f.path for f in (*train_files, *val_files)],
                        progress=progress)
    common = {"seq_len": seq_len, "batch_size": batch_size, "seed": seed, "rank": rank,
              "world_size": world_size, "chunks": chunks}
    train = DataLoader(LatentWindows(LatentEpisodes(cache, data_dir, train_files),
                                     start_step=start_step, **common), batch_size=None)
    if not val_files:
        return train, None
    val = DataLoader(LatentWindows(LatentEpisodes(cache, data_dir, val_files),
                                   num_batches=val_batches, **common), batch_size=None)
    return train, val
