"""Training batches from episode files: round trip, split, corrupt files, resume, workers, DDP."""

from __future__ import annotations

import random
import shutil
import warnings

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from world_model.data.dataset import (
    EpisodeWarning,
    EpisodeWindows,
    index_episodes,
    make_dataloaders,
    split_episodes,
)
from world_model.data.format import action_indices, list_episodes, read_episode, write_episode
from world_model.errors import DataError, UserError

T, B = 8, 4


@pytest.fixture()
def episodes(real_episodes_dir, tmp_path):
    """A private, writable copy of the 3 real episodes (tests add bad files to it)."""
    for path in list_episodes(real_episodes_dir):
        shutil.copy(path, tmp_path / path.name)
    return tmp_path


def _assert_batch_matches_files(batch, files, keys=()):
    for row in range(len(batch["start"])):
        path = files[int(batch["episode"][row])].path
        s = int(batch["start"][row])
        episode = read_episode(path)
        np.testing.assert_array_equal(np.asarray(batch["frames"][row]), episode["image"][s:s + T])
        np.testing.assert_array_equal(np.asarray(batch["actions"][row]),
                                      action_indices(episode["action"])[s:s + T])
        np.testing.assert_array_equal(np.asarray(batch["rewards"][row]),
                                      episode["reward"][s:s + T].astype(np.float32))
        for key in keys:
            np.testing.assert_array_equal(np.asarray(batch[key][row]), episode[key][s:s + T])


def test_batches_are_the_files_frames_actions_and_rewards_at_the_sampled_offsets(episodes):
    train, val = make_dataloaders(episodes, seq_len=T, batch_size=B, val_fraction=0.34, seed=3,
                                  keys=("maze_layout",))
    batch = next(iter(train))
    assert batch["frames"].shape == (B, T, 64, 64, 3) and batch["frames"].dtype == torch.uint8
    assert batch["actions"].shape == (B, T) and batch["actions"].dtype == torch.int64
    assert batch["rewards"].shape == (B, T) and batch["rewards"].dtype == torch.float32
    assert batch["maze_layout"].shape == (B, T, 9, 9) and batch["maze_layout"].dtype == torch.uint8
    assert int(batch["actions"].min()) >= 0 and int(batch["actions"].max()) < 6
    _assert_batch_matches_files(batch, train.dataset.files, keys=("maze_layout",))
    _assert_batch_matches_files(next(iter(val)), val.dataset.files)


def test_a_window_at_the_episode_start_has_the_noop_first_action(episodes):
    dataset = EpisodeWindows(episodes, seq_len=41, batch_size=2)  # the whole episode: start 0
    batch = dataset.batch(0)
    assert (batch["start"] == 0).all()
    assert (batch["actions"][:, 0] == 0).all() and (batch["rewards"][:, 0] == 0).all()
    episode = read_episode(dataset.files[int(batch["episode"][0])].path)
    np.testing.assert_array_equal(batch["frames"][0], episode["image"])


def test_split_is_by_file_disjoint_deterministic_and_order_independent(tmp_path):
    paths = [tmp_path / f"ep{i:04d}.npz" for i in range(200)]
    train, val = split_episodes(paths, 0.1, tmp_path)
    assert len(val) == 20 and len(train) == 180
    assert set(train).isdisjoint(val) and set(train) | set(val) == set(paths)
    shuffled = paths[:]
    random.Random(0).shuffle(shuffled)
    assert split_episodes(shuffled, 0.1, tmp_path) == (train, val)
    # adding files never moves an old validation file to training unless it is at the boundary
    _, grown_val = split_episodes(paths + [tmp_path / "new.npz"], 0.1, tmp_path)
    assert len(set(val) - set(grown_val)) <= 1
    # small sets still get one validation file, never all of them
    assert [len(x) for x in split_episodes(paths[:3], 0.05, tmp_path)] == [2, 1]
    assert [len(x) for x in split_episodes(paths[:1], 0.5, tmp_path)] == [1, 0]
    assert split_episodes(paths[:5], 0.0, tmp_path)[1] == []


def test_loaders_split_the_real_files_disjointly(episodes):
    train, val = make_dataloaders(episodes, seq_len=T, batch_size=B, val_fraction=0.34)
    train_paths = {f.path for f in train.dataset.files}
    val_paths = {f.path for f in val.dataset.files}
    assert len(train_paths) == 2 and len(val_paths) == 1 and train_paths.isdisjoint(val_paths)
    seen = {int(e) for step in range(5) for e in train.dataset.batch(step)["episode"]}
    assert seen <= {0, 1}


def test_corrupt_and_truncated_files_are_named_in_warnings_and_skipped(episodes):
    good = list_episodes(episodes)
    data = good[0].read_bytes()
    (episodes / "truncated.npz").write_bytes(data[: len(data) // 2])
    (episodes / "garbage.npz").write_bytes(np.random.default_rng(0).bytes(5000))
    shutil.copy(good[0], episodes / "bitrot.npz")  # goes bad once indexed (below)
    short = read_episode(good[1])
    write_episode(episodes / "short.npz", {k: v[:5] for k, v in short.items()})

    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        dataset = EpisodeWindows(episodes, seq_len=T, batch_size=B, seed=0)
        resumed = EpisodeWindows(episodes, seq_len=T, batch_size=B, seed=0)
        assert "bitrot.npz" in {f.path.name for f in dataset.files}
        # damaged on disk after the index was built: found when a window reaches it, then excluded
        (episodes / "bitrot.npz").write_bytes(data[:1000])
        batches = [dataset.batch(step) for step in range(12)]
        # a process resuming at step 6 has not met bitrot.npz yet: same batches all the same
        resumed_batches = [resumed.batch(step) for step in range(6, 12)]
    messages = "\n".join(str(w.message) for w in record if w.category is EpisodeWarning)
    for name in ("truncated.npz", "garbage.npz", "bitrot.npz", "short.npz"):
        assert name in messages, (name, messages)
    assert "bitrot.npz from now on" in messages, messages
    used = {dataset.files[int(e)].path.name for b in batches for e in b["episode"]}
    assert used == {p.name for p in good}
    for b in batches:
        _assert_batch_matches_files(b, dataset.files)
    for expected, got in zip(batches[6:], resumed_batches):
        assert np.array_equal(expected["start"], got["start"])
        assert np.array_equal(expected["episode"], got["episode"])


def test_only_when_every_file_is_bad_is_it_a_data_error(tmp_path):
    (tmp_path / "a.npz").write_bytes(b"not a zip file")
    (tmp_path / "b.npz").write_bytes(b"")
    with pytest.warns(EpisodeWarning), pytest.raises(DataError, match="no usable episode files"):
        EpisodeWindows(tmp_path, seq_len=T, batch_size=B)
    with pytest.warns(EpisodeWarning), pytest.raises(DataError, match="training episode files"):
        make_dataloaders(tmp_path, seq_len=T, batch_size=B, val_fraction=0.0)


def test_files_shorter_than_seq_len_are_skipped_and_too_long_windows_fail_clearly(episodes):
    with pytest.warns(EpisodeWarning, match="fewer than seq_len=42"):
        assert index_episodes(list_episodes(episodes), seq_len=42) == []
    with pytest.warns(EpisodeWarning), pytest.raises(DataError, match="seq_len=42"):
        EpisodeWindows(episodes, seq_len=42, batch_size=B)


def test_resuming_at_step_k_continues_the_same_stream(episodes):
    files = index_episodes(list_episodes(episodes), T)
    full = EpisodeWindows(files, T, B, seed=7)
    stream = [b for _, b in zip(range(6), full)]
    resumed = EpisodeWindows(files, T, B, seed=7, start_step=4)
    for expected, got in zip(stream[4:], resumed):
        for key in expected:
            assert torch.equal(expected[key], got[key]), key
    other_seed = next(iter(EpisodeWindows(files, T, B, seed=8)))
    assert not torch.equal(other_seed["frames"], stream[0]["frames"])


def test_multi_worker_loader_gives_the_single_process_stream(episodes):
    files = index_episodes(list_episodes(episodes), T)
    single = [b for _, b in zip(range(5), EpisodeWindows(files, T, B, seed=1, num_batches=5))]
    loader = DataLoader(EpisodeWindows(files, T, B, seed=1, num_batches=5), batch_size=None,
                        num_workers=2)
    multi = list(loader)
    assert len(multi) == 5
    for a, b in zip(single, multi):
        assert torch.equal(a["frames"], b["frames"]) and torch.equal(a["start"], b["start"])
    # the workers drew distinct batches (not one stream twice)
    assert not torch.equal(multi[0]["start"], multi[1]["start"]) or \
        not torch.equal(multi[0]["episode"], multi[1]["episode"])


def test_ddp_ranks_draw_different_streams_and_rank_zero_is_the_single_process_stream(episodes):
    files = index_episodes(list_episodes(episodes), T)
    alone = EpisodeWindows(files, T, B, seed=2).batch(0)
    rank0 = EpisodeWindows(files, T, B, seed=2, rank=0, world_size=2).batch(0)
    rank1 = EpisodeWindows(files, T, B, seed=2, rank=1, world_size=2).batch(0)
    assert np.array_equal(alone["frames"], rank0["frames"])
    assert not (np.array_equal(rank0["start"], rank1["start"])
                and np.array_equal(rank0["episode"], rank1["episode"]))


def test_terminal_flags_reach_the_batch_and_default_to_never(episodes):
    path = list_episodes(episodes)[0]
    episode = read_episode(path)
    n = len(episode["image"])
    terminal = np.zeros(n, np.uint8)
    terminal[-1] = 1  # the episode ended on its last step
    write_episode(path, {**episode, "terminal": terminal})
    data = EpisodeWindows(episodes, seq_len=n, batch_size=6, seed=0)
    ended = next(k for k, f in enumerate(data.files) if f.path == path)
    batch = data.batch(0)
    assert batch["terminals"].dtype == bool and batch["terminals"].shape == (6, n)
    for row, index in enumerate(batch["episode"]):
        expected = [False] * (n - 1) + [index == ended]  # files without the array: never
        assert batch["terminals"][row].tolist() == expected
    assert ended in batch["episode"].tolist()


def test_carried_chunks_follow_one_stretch_per_row_then_draw_anew(episodes):
    # TrainConfig.carry_chunks = 3: rows keep their episode, windows follow one another
    chunked = EpisodeWindows(episodes, seq_len=T, batch_size=B, seed=4, chunks=3)
    first = [chunked.batch(step) for step in range(3)]
    for k, batch in enumerate(first):
        assert (batch["chunk"] == k).all()
        np.testing.assert_array_equal(batch["episode"], first[0]["episode"])
        np.testing.assert_array_equal(batch["start"], first[0]["start"] + T * k)
        _assert_batch_matches_files(batch, chunked.files)
    nxt = chunked.batch(3)  # the next draw of stretches starts at chunk 0
    assert (nxt["chunk"] == 0).all()
    assert not np.array_equal(np.stack([nxt["episode"], nxt["start"]]),
                              np.stack([first[0]["episode"], first[0]["start"]]))
    assert "chunk" not in EpisodeWindows(episodes, seq_len=T, batch_size=B, seed=4).batch(0)
    with pytest.raises(UserError, match="shorter than seq_len=8 x chunks=9"):
        EpisodeWindows(chunked.files, seq_len=T, batch_size=B, chunks=9)  # 72 > 41 frames
