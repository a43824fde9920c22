"""The linear probes of :mod:`world_model.evaluation.probes`: closed-form ridge regression on standardized
features, its strength chosen on held-back training episodes, and the scores (R^2 for the target
vectors, accuracy for the maze layout) with their trivial floors. NumPy only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

#: Ridge strengths tried when ``ProbeConfig.ridge`` is None (chosen on held-back episodes).
RIDGE_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)


@dataclass
class RidgeProbe:
    """A fitted linear probe: ``y = ((x - mean) / scale) @ weight + bias``."""

    mean: np.ndarray
    """``(D,)`` training feature mean."""
    scale: np.ndarray
    """``(D,)`` training feature std (inf for constant features: they are ignored)."""
    weight: np.ndarray
    """``(D, O)``."""
    bias: np.ndarray
    """``(O,)`` training target mean."""
    ridge: float

    def predict(self, x: np.ndarray) -> np.ndarray:
        """``(n, D)`` -> ``(n, O)`` float64."""
        return ((np.asarray(x, np.float64) - self.mean) / self.scale) @ self.weight + self.bias


def fit_ridge(x: np.ndarray, y: np.ndarray, ridge: float) -> RidgeProbe:
    """Closed-form ridge on standardized ``x (n, D)`` for ``y (n, O)``: minimises
    ``mean ||y - z w - b||^2 + ridge ||w||^2`` (primal for D <= n, dual otherwise)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    n, D = x.shape
    mean, std = x.mean(0), x.std(0)
    scale = np.where(std > 1e-6 * max(float(std.max(initial=0.0)), 1e-30), std, np.inf)
    z = (x - mean) / scale
    bias = y.mean(0)
    yc = y - bias
    reg = max(ridge, 1e-10) * n  # a floor keeps the solve well-posed
    if D <= n:
        weight = np.linalg.solve(z.T @ z + reg * np.eye(D), z.T @ yc)
    else:
        weight = z.T @ np.linalg.solve(z @ z.T + reg * np.eye(n), yc)
    return RidgeProbe(mean, scale, weight, bias, float(ridge))


def r2_score(pred: np.ndarray, y: np.ndarray) -> float:
    """R^2 pooled over the outputs of ``(n, O)``: ``1 - sum (y - pred)^2 / sum (y - mean y)^2``."""
    sst = float(((y - y.mean(0)) ** 2).sum())
    return float("nan") if sst == 0 else 1.0 - float(((y - pred) ** 2).sum()) / sst


def accuracy(pred: np.ndarray, y: np.ndarray) -> float:
    """Fraction of 0/1 targets ``y`` that ``pred > 0.5`` gets right (all outputs together)."""
    return float(((pred > 0.5) == (y > 0.5)).mean())


SCORES = {"targets_vec": r2_score, "layout": accuracy}


def choose_ridge(x: np.ndarray, y: np.ndarray, groups: np.ndarray, score,
                 grid: tuple[float, ...] = RIDGE_GRID) -> tuple[float, dict[str, float]]:
    """The ridge strength of ``grid`` with the best ``score(pred, y)`` on the held-back training
    episodes: ``groups (n,)`` bool marks the samples held back. Returns ``(best, scores)``."""
    scores = {}
    for lam in grid:
        probe = fit_ridge(x[~groups], y[~groups], lam)
        s = score(probe.predict(x[groups]), y[groups])
        scores[str(lam)] = s if np.isfinite(s) else -np.inf
    best = max(grid, key=lambda lam: scores[str(lam)])
    return best, scores


def probe_feature(train_x: np.ndarray, train_y: dict[str, np.ndarray], test_x: np.ndarray,
                  test_y: dict[str, np.ndarray], held_back: np.ndarray,
                  ridge: float | None) -> dict[str, Any]:
    """Fit and score one feature ``(n, D)`` against every target (``{name: (n, O)}``)."""
    row: dict[str, Any] = {"dims": int(train_x.shape[1])}
    for name, score in SCORES.items():
        lam = ridge
        if lam is None:
            lam, _ = choose_ridge(train_x, train_y[name], held_back, score)
        probe = fit_ridge(train_x, train_y[name], lam)
        row[name] = {"test": score(probe.predict(test_x), test_y[name]),
                     "train": score(probe.predict(train_x), train_y[name]), "ridge": lam}
    return row


def _flat(a: np.ndarray) -> np.ndarray:
    """``(B, S, ...)`` -> ``(B * S, prod ...)`` (episode-major)."""
    return a.reshape(a.shape[0] * a.shape[1], -1)


def trivial_scores(targets: dict[str, np.ndarray], n_train: int) -> dict[str, float]:
    """The probes' floor: the training mean (R^2) and the per-cell training majority (accuracy)."""
    vec_train, vec_test = _flat(targets["targets_vec"][:n_train]), _flat(targets["targets_vec"][n_train:])
    lay_train, lay_test = _flat(targets["layout"][:n_train]), _flat(targets["layout"][n_train:])
    majority = (lay_train.mean(0) > 0.5).astype(np.float64)
    return {"targets_vec": r2_score(np.broadcast_to(vec_train.mean(0), vec_test.shape), vec_test),
            "layout": accuracy(np.broadcast_to(majority, lay_test.shape), lay_test)}
