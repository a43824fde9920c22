"""The RAD network's structure: causality, windows, memory pre-fetch, clean-only memory writes."""

from __future__ import annotations

import pytest
import torch
from model_utils import MEMORIES, MODES, tiny_model

from world_model.config import DiffusionConfig
from world_model.diffusion.schedule import Diffusion
from world_model.latents import PixelCodec
from world_model.training.objective import WorldModelObjective

B, T = 2, 8


def inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(B, T, 3, 8, 8, generator=g)
    a = torch.randint(0, 6, (B, T), generator=g)
    k = torch.randint(0, 1001, (B, T), generator=g)
    return z, a, k


def predict(model, z, a, k):
    reads, _ = model.prefetch(z, a)
    return model(z, k, a, reads).prediction


def per_frame_change(model, j, z, a, k):
    z2 = z.clone()
    z2[:, j] += 1.0
    with torch.no_grad():
        d = (predict(model, z, a, k) - predict(model, z2, a, k)).abs()
    return d.amax(dim=(0, 2, 3, 4))  # (T,)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("memory", MEMORIES)
def test_changing_a_frame_never_changes_earlier_predictions(memory, mode):
    model = tiny_model(memory, mode)
    z, a, k = inputs()
    for j in (2, 5):
        d = per_frame_change(model, j, z, a, k)
        assert torch.all(d[:j] == 0), d
        assert d[j] > 0


@pytest.mark.parametrize("memory", MEMORIES)
def test_changing_an_action_never_changes_earlier_predictions(memory):
    model = tiny_model(memory, "frame")
    z, a, k = inputs()
    a2 = a.clone()
    a2[:, 4] = (a2[:, 4] + 1) % 6
    with torch.no_grad():
        d = (predict(model, z, a, k) - predict(model, z, a2, k)).abs().amax(dim=(0, 2, 3, 4))
    assert torch.all(d[:4] == 0) and d[4] > 0


def test_one_layer_without_memory_ignores_frames_older_than_the_window():
    model = tiny_model("none", "frame", depth=1)  # window 3, horizon 3
    assert model.cfg.horizon == 3
    z, a, k = inputs()
    d = per_frame_change(model, 1, z, a, k)
    assert torch.all(d[1:4] > 0)  # frames 1..3 see frame 1 in their window
    assert torch.all(d[4:] == 0)  # frames 4.. do not: it left their window


def test_stacked_windows_without_memory_ignore_frames_beyond_the_horizon():
    model = tiny_model("none", "frame")  # depth 2, window 3: horizon 2 * 2 + 1 = 5
    assert model.cfg.horizon == 5
    z, a, k = inputs()
    d = per_frame_change(model, 1, z, a, k)
    assert torch.all(d[1:6] > 0)
    assert torch.all(d[6:] == 0)


@pytest.mark.parametrize("memory", ("lstm", "mamba2", "ttt"))
def test_frame_mode_memory_carries_frames_older_than_the_window(memory):
    model = tiny_model(memory, "frame")
    z, a, k = inputs()
    d = per_frame_change(model, 1, z, a, k)
    assert torch.all(d[1 + model.cfg.horizon:] > 1e-6), d  # beyond attention: only via memory


def test_chunk_mode_sees_earlier_chunks_only_through_memory():
    z, a, k = inputs()
    without = per_frame_change(tiny_model("none", "chunk"), 1, z, a, k)  # chunks {0,1,2},{3,4,5},..
    assert torch.all(without[1:3] > 0) and torch.all(without[3:] == 0)
    with_memory = per_frame_change(tiny_model("lstm", "chunk"), 1, z, a, k)
    assert torch.all(with_memory[3:] > 1e-6)


@pytest.mark.parametrize("memory", ("lstm", "mamba2", "ttt"))
def test_prefetch_equals_a_frame_by_frame_loop_of_window_one_passes(memory):
    model = tiny_model(memory, "frame")
    z, a, _ = inputs()
    with torch.no_grad():
        kept, final = model.prefetch(z, a, keep=torch.arange(T + 1))
        state = model.init_memory(B)
        for t in range(T + 1):
            for layer, layer_state in enumerate(state):
                for s_kept, s_loop in zip(kept[layer], layer_state):
                    torch.testing.assert_close(s_kept[:, :, t], s_loop, rtol=1e-5, atol=1e-5)
            if t < T:
                state = model.write_frame(z[:, t], a[:, t], state)
    for layer in range(len(final)):
        for s_final, s_loop in zip(final[layer], state[layer]):
            torch.testing.assert_close(s_final, s_loop, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("memory", ("lstm", "mamba2", "ttt"))
def test_memory_is_written_from_clean_frames_only(memory):
    model = tiny_model(memory, "frame")
    objective = WorldModelObjective(model, Diffusion(DiffusionConfig()), PixelCodec())
    z, a, k = inputs()
    k = k.clamp(min=1)
    noise1 = torch.randn_like(z)
    noise2 = noise1.clone()
    noise2[:, 3] = torch.randn_like(noise2[:, 3])
    with torch.no_grad():
        out1, reads1, _, _, _ = objective.denoise_pass(z, a, k, noise1)
        out2, reads2, _, _, _ = objective.denoise_pass(z, a, k, noise2)
    for r1, r2 in zip(reads1, reads2):
        for s1, s2 in zip(r1, r2):
            assert torch.equal(s1, s2)
    assert not torch.equal(out1.prediction[:, 3], out2.prediction[:, 3])


def test_history_noise_reaches_the_memory_and_the_previous_frame_only():
    """``history_noise_max``: what the memory and the stacked previous frame read is noised (reads
    and predictions change, more for a higher top level), the targets' noisy input is not; 0
    leaves the pass as it was, bit for bit."""
    model = tiny_model("lstm", "frame", prev_frame="residual")
    z, a, k = inputs()
    noise = torch.randn_like(z)

    def run(top, seed=3):
        objective = WorldModelObjective(model, Diffusion(DiffusionConfig(history_noise_max=top)),
                                        PixelCodec())
        with torch.no_grad():
            return objective.denoise_pass(z, a, k, noise, torch.Generator().manual_seed(seed))

    clean_reads, _ = model.prefetch(z, a)
    out0, reads0, x0, _, _ = run(0)
    for r, c in zip(reads0, clean_reads):
        assert all(torch.equal(s1, s2) for s1, s2 in zip(r, c))
    gaps = {}
    for top in (20, 1000):
        out, reads, x, _, _ = run(top)
        assert torch.equal(x, x0)  # the frames being denoised are noised as before
        gaps[top] = (out.prediction - out0.prediction).abs().mean().item()
        assert any(not torch.equal(s1, s2) for r, c in zip(reads, clean_reads)
                   for s1, s2 in zip(r, c))
    assert 0 < gaps[20] < gaps[1000]
    torch.testing.assert_close(run(1000)[0].prediction, run(1000)[0].prediction)  # seeded
    with pytest.raises(Exception, match="history_noise_max needs context='independent'"):
        DiffusionConfig(history_noise_max=10, context="clean").validate()
    with pytest.raises(Exception, match="history_noise_max must be in"):
        DiffusionConfig(history_noise_max=5000).validate()


def test_memory_none_has_no_memory_parameters():
    model = tiny_model("none")
    assert not any("memory" in n or "mem_" in n for n, _ in model.named_parameters())
    assert model.prefetch(*inputs()[:2]) == ([None, None], [None, None])
