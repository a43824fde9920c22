"""Property: whatever an episode file holds, a reader gives a DataError or an EpisodeWarning that
names it, or correct data; never another exception.

Random files (hypothesis): valid episodes with one or two defects (:data:`DEFECTS`: arrays of
other shapes, dtypes and lengths, missing and extra keys, NaN and infinite rewards, out-of-range
action indices), written compressed or not, some with their bytes cut off or overwritten. Each is read
by the episode reader (``read_episode``), the check (``inspect_episode``) and the loader, alone
and beside a good file.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from world_model.data.checks import EpisodeWarning, inspect_episode
from world_model.data.dataset import EpisodeWindows
from world_model.data.format import action_indices, one_hot_actions, read_episode
from world_model.errors import DataError

T, B, S = 4, 3, 8  # window, batch, frame size (small: the property is about layouts, not pixels)
NAME = "random-episode.npz"
DEFECTS = (
    None, "frames of another size", "frames not square", "frames of another rank",
    "frames not uint8", "frames Fortran-ordered", "frames of another length", "action too wide",
    "action too narrow", "action complex", "action objects", "action indices",
    "action indices out of range", "action of another length", "reward of another length",
    "reward 2-d", "reward NaN", "reward infinite", "reward big-endian", "reward complex",
    "reward objects", "missing image", "missing action", "missing reward", "agent_pos 3-d",
    "agent_pos of another length", "extra key", "env_id string", "fewer than T frames",
    "no frames",
)


#: What the check makes of a file with each defect (and no other).
ACCEPTED = {None, "frames Fortran-ordered", "action indices", "reward big-endian", "extra key",
            "env_id string", "agent_pos 3-d", "agent_pos of another length"}  # (not read)
SHORT = {"fewer than T frames", "no frames"}  # in the layout; the loader skips it as too short


def _defective(ep: dict[str, np.ndarray], defect: str | None, rng: np.random.Generator) -> None:
    """Make ``ep`` (a valid episode of ``n`` frames) wrong in one way, in place."""
    n = len(ep["image"])
    image, action, reward = ep["image"], ep["action"], ep["reward"]
    change = {
        "frames of another size": lambda: {"image": image[:, ::2, ::2]},
        "frames not square": lambda: {"image": image[:, :, : S // 2]},
        "frames of another rank": lambda: {"image": image[..., 0]},
        "frames not uint8": lambda: {"image": image.astype(np.float32)},
        "frames Fortran-ordered": lambda: {"image": np.asfortranarray(image)},
        "frames of another length": lambda: {"image": image[:-1]},
        "action too wide": lambda: {"action": one_hot_actions(rng.integers(7, size=n - 1), 7)},
        "action too narrow": lambda: {"action": action[:, :5]},
        "action complex": lambda: {"action": action.astype(np.complex64)},
        "action objects": lambda: {"action": action.astype(object)},
        "action indices": lambda: {"action": action_indices(action)},
        "action indices out of range": lambda: {"action": np.arange(n) % 9 - 1},
        "action of another length": lambda: {"action": action[:-1]},
        "reward of another length": lambda: {"reward": reward[:-1]},
        "reward 2-d": lambda: {"reward": reward[:, None]},
        "reward NaN": lambda: {"reward": np.where(np.arange(n) == n // 2, np.nan, reward)},
        "reward infinite": lambda: {"reward": np.where(np.arange(n) == 0, -np.inf, reward)},
        "reward big-endian": lambda: {"reward": reward.astype(">f8")},
        "reward complex": lambda: {"reward": reward.astype(np.complex64)},
        "reward objects": lambda: {"reward": reward.astype(object)},
        "agent_pos 3-d": lambda: {"agent_pos": rng.random((n, 3))},
        "agent_pos of another length": lambda: {"agent_pos": rng.random((n + 1, 2))},
        "extra key": lambda: {"extra": rng.random((3, 1))},
        "env_id string": lambda: {"env_id": np.array("gym:Something-v0")},
        "fewer than T frames": lambda: {k: v[: T - 1] for k, v in ep.items()},
        "no frames": lambda: {k: v[:0] for k, v in ep.items()},
    }
    if defect is not None and defect.startswith("missing "):
        del ep[defect.split()[1]]
    elif defect is not None:
        ep.update(change[defect]())


@st.composite
def episodes(draw) -> dict[str, np.ndarray]:
    """A valid episode of ``n`` frames with one or two defects (or none)."""
    n = draw(st.integers(T, 9))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    ep = {"image": rng.integers(0, 256, (n, S, S, 3), dtype=np.uint8),
          "action": one_hot_actions(rng.integers(6, size=n - 1), 6),
          "reward": rng.integers(0, 2, size=n).astype(np.float32)}
    if draw(st.booleans()):
        ep["agent_pos"] = rng.random((n, 2))
    for defect in draw(st.lists(st.sampled_from(DEFECTS), min_size=1, max_size=2)):
        if all(k in ep for k in ("image", "action", "reward")):  # after a missing key: no more
            _defective(ep, defect, rng)
    return ep


@st.composite
def files(draw) -> tuple[dict[str, np.ndarray], str, float, int]:
    """An episode, how it is written, and the damage done to the bytes (none, cut, overwritten)."""
    return (draw(episodes()), draw(st.sampled_from(("savez", "savez_compressed"))),
            draw(st.sampled_from((1.0,) * 8 + (0.5, 0.97))),
            draw(st.sampled_from((0,) * 8 + (1, 2))))


def _write(directory: Path, ep, writer: str, keep: float, overwrite: int) -> Path:
    path = directory / NAME
    getattr(np, writer)(path, **ep)
    data = bytearray(path.read_bytes())
    if overwrite:  # bytes overwritten: in the first array's header or in the middle of the file
        at = 60 if overwrite == 1 else len(data) // 2
        data[at:at + 16] = b"\xff" * 16
    path.write_bytes(bytes(data[:int(len(data) * keep)]))
    return path


def _damaged(keep: float, overwrite: int) -> bool:
    return keep < 1.0 or overwrite > 0


def _assert_window_is_the_file(batch, row, ep, exact: bool):
    """Row ``row`` of a batch is a correct window: shapes, dtypes, ranges; equal to the file's
    arrays when the file was not damaged (a byte overwritten in compressed frames may decode)."""
    frames, actions, rewards = batch["frames"][row], batch["actions"][row], batch["rewards"][row]
    assert frames.shape == (T, S, S, 3) and frames.dtype == np.uint8
    assert actions.shape == (T,) and actions.dtype == np.int64
    assert ((0 <= actions) & (actions < 6)).all()
    assert rewards.shape == (T,) and rewards.dtype == np.float32 and np.isfinite(rewards).all()
    if exact:
        s = int(batch["start"][row])
        np.testing.assert_array_equal(frames, ep["image"][s:s + T])
        np.testing.assert_array_equal(actions, action_indices(ep["action"])[s:s + T])
        np.testing.assert_array_equal(rewards, ep["reward"][s:s + T].astype(np.float32))


@pytest.fixture(scope="module")
def good_episode(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("good") / "good.npz"
    np.savez_compressed(path, image=rng.integers(0, 256, (12, S, S, 3), dtype=np.uint8),
                        action=one_hot_actions(rng.integers(6, size=11), 6),
                        reward=rng.random(12).astype(np.float32))
    return path


PROPERTY = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


@PROPERTY
@given(files())
def test_the_reader_and_the_check_name_the_file_or_give_its_arrays(tmp_path_factory, file):
    ep, writer, keep, overwrite = file
    path = _write(tmp_path_factory.mktemp("one"), ep, writer, keep, overwrite)
    try:
        arrays = read_episode(path)
    except DataError as exc:
        assert NAME in str(exc)
    else:
        if not _damaged(keep, overwrite):
            assert sorted(arrays) == sorted(ep)
    try:
        entry = inspect_episode(path, frame_size=S, num_actions=6)
    except DataError as exc:
        assert NAME in str(exc)
    else:  # what passes the check is in the layout
        assert entry.frame_size == S
        if not _damaged(keep, overwrite):
            assert entry.length == len(ep["image"])
            assert np.isfinite(ep["reward"].astype(np.float64)).all()


@PROPERTY
@given(files())
def test_the_loader_names_and_skips_a_bad_file_or_batches_it_correctly(tmp_path_factory,
                                                                      good_episode, file):
    ep, writer, keep, overwrite = file
    directory = tmp_path_factory.mktemp("data")
    _write(directory, ep, writer, keep, overwrite)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        try:  # the file alone: refused by name, or correct batches
            alone = EpisodeWindows(directory, T, B, frame_size=S, num_actions=6)
            batches = [alone.batch(step) for step in range(3)]
        except DataError as exc:
            assert NAME in str(exc)
        else:
            for batch in batches:
                for row in range(B):
                    _assert_window_is_the_file(batch, row, ep, not _damaged(keep, overwrite))
        shutil.copy(good_episode, directory / "good.npz")
        # beside a good file: never an error; the bad file is skipped with a warning naming it
        dataset = EpisodeWindows(directory, T, B, frame_size=S, num_actions=6)
        batches = [dataset.batch(step) for step in range(3)]
    warned = [str(w.message) for w in record if w.category is EpisodeWarning]
    assert all(NAME in message for message in warned), warned
    good = read_episode(good_episode)
    for batch in batches:
        for row in range(B):
            name = dataset.files[int(batch["episode"][row])].path.name
            exact = name == "good.npz" or not _damaged(keep, overwrite)
            _assert_window_is_the_file(batch, row, good if name == "good.npz" else ep, exact)
    if NAME not in {f.path.name for f in dataset.files}:
        assert warned, "a skipped file must be named in a warning"


@pytest.mark.parametrize("defect", DEFECTS)
def test_each_defect_is_refused_by_name_or_read_exactly(tmp_path, good_episode, defect):
    rng = np.random.default_rng(0)
    ep = {"image": rng.integers(0, 256, (7, S, S, 3), dtype=np.uint8),
          "action": one_hot_actions(rng.integers(6, size=6), 6),
          "reward": rng.integers(0, 2, size=7).astype(np.float32), "agent_pos": rng.random((7, 2))}
    _defective(ep, defect, rng)
    _write(tmp_path, ep, "savez_compressed", 1.0, 0)
    shutil.copy(good_episode, tmp_path / "good.npz")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        try:
            entry = inspect_episode(tmp_path / NAME, frame_size=S, num_actions=6)
        except DataError as exc:
            assert defect not in ACCEPTED | SHORT, exc
            assert str(exc).startswith(f"{tmp_path / NAME}: "), exc
        else:
            assert defect in ACCEPTED | SHORT, f"{defect!r} passed the check"
            assert entry.length == len(ep["image"])
        if defect is not None and defect.startswith("agent_pos"):  # refused where it is read
            with pytest.raises(DataError, match=f"{NAME}: 'agent_pos' must be"):
                inspect_episode(tmp_path / NAME, frame_size=S, optional=("agent_pos",))
        dataset = EpisodeWindows(tmp_path, T, B, frame_size=S, num_actions=6)
        batches = [dataset.batch(step) for step in range(4)]
    warned = [str(w.message) for w in record if w.category is EpisodeWarning]
    used = NAME in {f.path.name for f in dataset.files}
    assert used == (defect in ACCEPTED)
    assert bool(warned) == (not used) and all(NAME in message for message in warned)
    good = read_episode(good_episode)
    for batch in batches:
        for row in range(B):
            name = dataset.files[int(batch["episode"][row])].path.name
            _assert_window_is_the_file(batch, row, good if name == "good.npz" else ep, True)
