"""Choosing where a reset starts: the env's default context source, or what
``reset(options=...)`` asks for.

Options (see ``RADEnv.reset``): ``{"context": "bank" | "data" | "real"}`` picks the source,
``{"clip": k}`` (or one int per row) a clip of the bank, ``{"data_dir": DIR}`` the episode files of
``"data"``, ``{"frames": (C, H, W, 3) uint8, "actions": (C,) int}`` (or one per row) the caller's
own context. Unknown keys and contradictory combinations are errors that name the option.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rad_env.bank import BANK_FILE, ContextBank
from rad_env.config import CONTEXT_SOURCES
from rad_env.contexts import Context, ContextSource, DataContexts, RealContexts, check_context
from world_model.errors import CheckpointError, DataError, UserError

#: The keys ``reset(options=...)`` accepts (``"context"``: one of :data:`CONTEXT_SOURCES`).
RESET_OPTIONS = ("context", "clip", "frames", "actions", "data_dir")


class ContextChooser:
    """Picks the context of every reset: the default source, or what reset options ask for.

    Args:
        run_dir: the checkpoint directory (its ``contexts.npz`` is the default bank).
        frame_size, num_actions, window: of the world (window sets the default length).
        contexts: a bank file instead of the checkpoint's.
        context: the default source, one of :data:`CONTEXT_SOURCES` (checked by ``EnvConfig``).
        data_dir: episode files for ``"data"``.
        context_len: frames per context (default: the bank's clip length, else ``2 * window``).
        real_env_kwargs: for :class:`RealContexts`.
        env_id: the real environment of ``"real"`` contexts (the world's ``train.env_id``).
    """

    def __init__(self, run_dir: Path, frame_size: int, num_actions: int, window: int, *,
                 contexts: str | Path | None = None, context: str = "bank",
                 data_dir: str | Path | None = None, context_len: int | None = None,
                 real_env_kwargs: dict[str, Any] | None = None,
                 env_id: str = "memory-maze-9x9") -> None:
        self.run_dir, self.default = Path(run_dir), context
        self.frame_size, self.num_actions = frame_size, num_actions
        self.data_dir = None if data_dir is None else Path(data_dir)
        self.real_env_kwargs, self.env_id = dict(real_env_kwargs or {}), env_id
        self.bank = self._load_bank(contexts)
        default_len = self.bank.context_len if self.bank is not None else 2 * window
        self.context_len = int(context_len) if context_len is not None else default_len
        if context == "bank":
            self._bank().clip(0, self.context_len)  # a too long context_len fails now
        self._data: dict[Path, DataContexts] = {}
        self._real: RealContexts | None = None

    def _load_bank(self, contexts: str | Path | None) -> ContextBank | None:
        path = Path(contexts) if contexts is not None else self.run_dir / BANK_FILE
        if contexts is None and not path.is_file():
            return None
        try:
            bank = ContextBank.load(path)
        except DataError as exc:
            if contexts is None:  # the checkpoint's own bank is broken
                raise CheckpointError(str(exc)) from exc
            raise
        if bank.frame_size != self.frame_size:
            raise DataError(f"{path}: frames are {bank.frame_size}x{bank.frame_size}, the world "
                            f"makes {self.frame_size}x{self.frame_size}")
        return bank

    def _bank(self) -> ContextBank:
        if self.bank is None:
            raise CheckpointError(
                f"no context bank: {self.run_dir / BANK_FILE} does not exist. Pass contexts=FILE "
                f"(see make_context_bank), context='data' with data_dir=DIR, context='real', or "
                f"reset(options={{'frames': ..., 'actions': ...}})")
        return self.bank

    def _source(self, name: str, data_dir: Any) -> ContextSource:
        if name == "bank":
            return self._bank()
        if name == "data":
            root = Path(data_dir) if data_dir is not None else self.data_dir
            if root is None:
                raise UserError("context 'data' needs a directory: data_dir= when making the env "
                                "or options={'context': 'data', 'data_dir': DIR}")
            if root not in self._data:
                self._data[root] = DataContexts(root, self.context_len, self.frame_size,
                                                self.num_actions)
            return self._data[root]
        if self._real is None:
            self._real = RealContexts(self.env_id, self.num_actions, self.frame_size,
                                      **self.real_env_kwargs)
        return self._real

    def close(self) -> None:
        """Free the real env of ``"real"`` contexts, if one was built."""
        if self._real is not None:
            self._real.close()

    def draw(self, rngs: Sequence[np.random.Generator], options: dict[str, Any] | None
             ) -> list[Context]:
        """One context per generator (each row's own), following reset ``options``. Every
        context is checked against the world here (frame size, actions), once: the engine is
        told not to check again."""
        opts = dict(options or {})
        unknown = sorted(set(opts) - set(RESET_OPTIONS))
        if unknown:
            raise UserError(f"unknown reset option(s) {unknown}; known: {list(RESET_OPTIONS)}")
        if "frames" in opts or "actions" in opts:
            return self._given(len(rngs), opts)
        source = opts.get("context", self.default)
        if source not in CONTEXT_SOURCES:
            raise UserError(f"options['context']={source!r}: expected one of {CONTEXT_SOURCES}, "
                            f"or pass options 'frames' and 'actions'")
        if "clip" in opts and source != "bank":
            raise UserError(f"options['clip'] picks a clip of the context bank, not of {source!r}")
        if "data_dir" in opts and source != "data":
            raise UserError(f"options['data_dir'] is for context 'data', not {source!r}")
        clips = opts.get("clip")
        if clips is not None:
            clips = [clips] * len(rngs) if np.ndim(clips) == 0 else list(clips)
            if len(clips) != len(rngs) or not all(isinstance(c, (int, np.integer)) for c in clips):
                raise UserError(f"options['clip'] must be an int or {len(rngs)} ints, got {clips}")
            return [self._checked(self._bank().clip(int(c), self.context_len)) for c in clips]
        src = self._source(source, opts.get("data_dir"))
        return [self._checked(src.sample(rng, self.context_len)) for rng in rngs]

    def _checked(self, context: Context) -> Context:
        check_context(context.frames, context.actions, self.frame_size, self.num_actions,
                      f"{context.source} context")
        return context

    def _given(self, n: int, opts: dict[str, Any]) -> list[Context]:
        if "frames" not in opts or "actions" not in opts:
            raise UserError("reset options 'frames' and 'actions' go together (the real context "
                            "frames and the action that led to each)")
        if opts.get("context", "given") != "given" or "clip" in opts:
            raise UserError("reset options 'frames'/'actions' give the context: drop 'context' "
                            "and 'clip'")
        frames, actions = np.asarray(opts["frames"]), np.asarray(opts["actions"])
        per_row = frames.ndim == 5
        if per_row and (len(frames) != n or actions.ndim != 2 or len(actions) != n):
            raise UserError(f"per-row context frames must be ({n}, C, H, W, 3) with actions "
                            f"({n}, C), got {frames.shape} and {actions.shape}")
        out = []
        for k in range(n):
            f, a = check_context(frames[k] if per_row else frames,
                                 actions[k] if per_row else actions, self.frame_size,
                                 self.num_actions, "reset options 'frames'/'actions':")
            out.append(Context(f, a, "given"))
        return out
