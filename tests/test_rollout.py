"""The rollout engine: cached single-frame passes equal the training pass, memory bookkeeping equals
the pre-fetch, seeded sampling, per-row state (reset, clone, index), constant state size."""

from __future__ import annotations

import itertools

import pytest
import torch
from model_utils import MEMORIES, MODES, tiny_engine, tiny_model

from world_model.config import DiffusionConfig, SamplerConfig
from world_model.diffusion.samplers import DDIMSampler, make_sampler
from world_model.diffusion.schedule import Diffusion
from world_model.engine.rollout import RolloutEngine
from world_model.engine.world_state import WorldState
from world_model.errors import UserError
from world_model.network.memory import LSTMMemory
from world_model.network.windows import window_start

B, T = 2, 8  # tiny models: window 3, depth 2, 8x8 pixel latents; T > window so memory matters
ATOL = 2e-5


def make_engine(memory="lstm", mode="frame", steps=3, eta=0.0, **over) -> RolloutEngine:
    return tiny_engine(tiny_model(memory, mode, **over), steps=steps, eta=eta)


def sequence(seed=0, batch=B, length=T):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, length, 3, 8, 8, generator=g)
    a = torch.randint(0, 6, (batch, length), generator=g)
    x = torch.randn(batch, 3, 8, 8, generator=g)  # a noisy frame
    k = torch.randint(1, 1001, (batch,), generator=g)  # its level, per row
    return z, a, x, k


def training_pass(model, z_context, x, k, a):
    """The training path: clean context at level 0 plus the noisy frame at level k, one windowed
    ``forward`` with the pre-fetched memory reads. Returns the new frame's output."""
    Bn, t = z_context.shape[:2]
    seq = torch.cat([z_context, x[:, None]], dim=1)
    levels = torch.cat([torch.zeros(Bn, t, dtype=torch.long), k[:, None]], dim=1)
    reads, _ = model.prefetch(seq, a[:, :t + 1])  # a frame never reads its own write: x is unused
    out = model(seq, levels, a[:, :t + 1], reads)
    return out


def frames_and_actions(seed=0, batch=B, length=4):
    g = torch.Generator().manual_seed(seed)
    frames = torch.randint(0, 256, (batch, length, 8, 8, 3), dtype=torch.uint8, generator=g)
    return frames, torch.randint(0, 6, (batch, length), generator=g)


def rollout(engine, state, actions):
    return torch.stack([engine.step(state, actions[:, i])[0] for i in range(actions.shape[1])], 1)


# -- the cached path equals the training path ----------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("memory", MEMORIES)
def test_cached_denoiser_matches_training_pass_at_every_frame(memory, mode):
    engine = make_engine(memory, mode)
    model = engine.model
    z, a, x, k = sequence()
    state = engine.init_state(B, seeds=0)
    with torch.no_grad():
        for t in range(T):
            cached = engine.predict(state, x, k, a[:, t])
            full = training_pass(model, z[:, :t], x, k, a)
            torch.testing.assert_close(cached.prediction[:, 0], full.prediction[:, t],
                                       rtol=0, atol=ATOL)
            info = engine.observe_latents(state, z[:, t], a[:, t])
            clean = model(z[:, :t + 1], torch.zeros(B, t + 1, dtype=torch.long), a[:, :t + 1],
                          model.prefetch(z[:, :t + 1], a[:, :t + 1])[0])
            torch.testing.assert_close(info.reward, clean.reward[:, t], rtol=0, atol=ATOL)
            torch.testing.assert_close(info.termination_prob,
                                       torch.sigmoid(clean.termination_logit[:, t]),
                                       rtol=0, atol=ATOL)
    assert state.frame_index.tolist() == [T] * B


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("memory", ("lstm", "mamba2", "ttt"))
def test_memory_after_observing_equals_prefetch(memory, mode):
    engine = make_engine(memory, mode)
    z, a, _, _ = sequence(1)
    state = engine.start_latents(z, a, seeds=0)
    read = window_start(torch.tensor([T]), engine.window, mode)  # what frame T will read
    with torch.no_grad():
        kept, final = engine.model.prefetch(z, a, keep=read)
        flushed = engine.flushed_memory(state)
    for layer in range(engine.cfg.depth):
        for s_prefetch, s_engine in zip(kept[layer], state.memory[layer]):
            torch.testing.assert_close(s_engine, s_prefetch[:, :, 0], rtol=0, atol=ATOL)
        for s_prefetch, s_engine in zip(final[layer], flushed[layer]):
            torch.testing.assert_close(s_engine, s_prefetch, rtol=0, atol=ATOL)


def test_window_one_writes_every_frame_at_once():
    engine = make_engine("lstm", "frame", window=1)
    z, a, x, k = sequence(2)
    state = engine.start_latents(z[:, :5], a[:, :5])
    with torch.no_grad():
        cached = engine.predict(state, x, k, a[:, 5])
        full = training_pass(engine.model, z[:, :5], x, k, a)
    torch.testing.assert_close(cached.prediction[:, 0], full.prediction[:, 5], rtol=0, atol=ATOL)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("memory", ("lstm", "none"))
def test_rows_at_different_frame_indices_each_match_their_training_pass(memory, mode):
    engine = make_engine(memory, mode)
    z, a, x, k = sequence(3)
    state = engine.start_latents(z[:, :4], a[:, :4], seeds=0)
    state.reset_rows([1])
    for t in range(3):  # row 0 goes on to frame 7; row 1 restarts from frame 0
        engine.observe_latents(state, torch.stack([z[0, 4 + t], z[1, t]]),
                               torch.stack([a[0, 4 + t], a[1, t]]))
    assert state.frame_index.tolist() == [7, 3]
    with torch.no_grad():
        out = engine.predict(state, x, k, torch.stack([a[0, 7], a[1, 3]])).prediction[:, 0]
        row0 = training_pass(engine.model, z[:1, :7], x[:1], k[:1], a[:1]).prediction[0, 7]
        row1 = training_pass(engine.model, z[1:, :3], x[1:], k[1:], a[1:]).prediction[0, 3]
    torch.testing.assert_close(out[0], row0, rtol=0, atol=ATOL)
    torch.testing.assert_close(out[1], row1, rtol=0, atol=ATOL)


# -- sampling ------------------------------------------------------------------------------------
def test_ddim_levels_run_from_pure_noise_to_clean():
    sampler = DDIMSampler(Diffusion(DiffusionConfig(num_levels=1000)), SamplerConfig(steps=7))
    levels = sampler.levels.tolist()
    assert levels[0] == 1000 and levels[-1] == 0 and len(levels) == 8
    assert all(a > b for a, b in itertools.pairwise(levels))
    with pytest.raises(UserError):
        DDIMSampler(Diffusion(DiffusionConfig(num_levels=10)), SamplerConfig(steps=11))


@pytest.mark.parametrize("kind", ("ddim", "heun"))
@pytest.mark.parametrize("prediction", ("v", "eps", "x0"))
def test_every_sampler_with_an_oracle_denoiser_recovers_the_clean_frame(prediction, kind):
    diffusion = Diffusion(DiffusionConfig(prediction=prediction))
    sampler = make_sampler(diffusion, SamplerConfig(steps=5, kind=kind))
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(3, 3, 8, 8, generator=g) * 2 - 1
    calls = []

    def oracle(x, level):  # the output that predicts x0 exactly from x at level
        calls.append(level)
        lv = torch.full((3,), level)
        a, s = diffusion.coefficients(lv)
        eps = (x - a.view(-1, 1, 1, 1) * x0) / s.view(-1, 1, 1, 1)  # the noise that explains x
        return diffusion.target(x0[:, None], eps[:, None], lv[:, None])[:, 0]

    x = sampler.sample(oracle, torch.randn(3, 3, 8, 8, generator=g))
    torch.testing.assert_close(x, x0, rtol=0, atol=1e-4)
    # Heun: two passes a step but the first (from alpha = 0) and the last (to level 0)
    assert len(calls) == (5 if kind == "ddim" else 2 * 5 - 2)


def test_heun_is_deterministic_and_an_unknown_kind_is_refused():
    diffusion = Diffusion(DiffusionConfig())
    with pytest.raises(UserError, match="eta"):
        make_sampler(diffusion, SamplerConfig(steps=2, kind="heun", eta=0.5))
    with pytest.raises(UserError, match="kind"):
        make_sampler(diffusion, SamplerConfig(steps=2, kind="euler-maruyama"))


@pytest.mark.parametrize("eta", (0.0, 0.7))
def test_seeded_rollouts_reproduce_exactly(eta):
    engine = make_engine("lstm", "frame", eta=eta)
    frames, actions = frames_and_actions()
    runs = []
    for _ in range(2):
        state = engine.start(frames, actions, seeds=[11, 12])
        runs.append(rollout(engine, state, actions.flip(1)))
    assert torch.equal(runs[0], runs[1])


def test_reencode_keeps_the_latent_of_the_decoded_frame_in_the_context():
    """With ``SamplerConfig.reencode`` the frame joining the context is encode(decode(x)) of the
    sampler's output: ``step`` and ``step_latents`` agree, the observation is that frame's
    picture, and the next frames follow from the re-encoded context (not the raw one)."""
    from dataclasses import replace

    plain = make_engine("lstm", "frame")
    again = RolloutEngine(plain.world, replace(plain.sampler.config, reencode=True))
    frames, actions = frames_and_actions()
    a = actions.flip(1)
    raw, picture, latent = plain.start(frames, actions, [3, 4]), again.start(frames, actions, [3, 4]), \
        again.start(frames, actions, [3, 4])
    x = plain.step_latents(raw, a[:, 0]).latent
    shown, info = again.step(picture, a[:, 0])
    assert torch.equal(plain.codec.decode(x), shown)  # the same sample, shown as it was drawn
    assert torch.equal(info.latent, again.codec.encode(shown))  # the context keeps its picture
    assert not torch.equal(info.latent, x)
    assert torch.equal(again.step_latents(latent, a[:, 0]).latent, info.latent)
    later = [e.step(s, a[:, 1])[0] for e, s in ((plain, raw), (again, picture))]
    assert not torch.equal(*later)  # what the context holds changes what comes next


def test_rows_with_different_seeds_differ_and_equal_seeds_agree():
    engine = make_engine("lstm", "frame", eta=0.5)
    frames, actions = frames_and_actions()
    frames, actions = frames[:1].expand(3, -1, -1, -1, -1), actions[:1].expand(3, -1)
    state = engine.start(frames, actions, seeds=[5, 6, 5])
    out = rollout(engine, state, actions)
    assert not torch.equal(out[0], out[1])
    torch.testing.assert_close(out[0].float(), out[2].float(), rtol=0, atol=1.0)  # rounding only


def test_resetting_one_row_leaves_the_others_untouched():
    engine = make_engine("lstm", "frame")
    frames, actions = frames_and_actions(batch=3, length=5)
    state = engine.start(frames, actions, seeds=[1, 2, 3])
    other = state.clone()
    other.reset_rows(torch.tensor([False, True, False]))
    assert other.frame_index.tolist() == [5, 0, 5]
    assert all(float(t[1].abs().sum()) == 0 for t in other._tensors())
    a = actions[:, :4]
    ref, out = rollout(engine, state, a), rollout(engine, other, a)
    torch.testing.assert_close(out[[0, 2]].float(), ref[[0, 2]].float(), rtol=0, atol=1.0)
    for s_ref, s_out in zip(state._tensors(), other._tensors()):
        torch.testing.assert_close(s_out[[0, 2]].float(), s_ref[[0, 2]].float(),
                                   rtol=0, atol=ATOL)


@pytest.mark.parametrize("mode", MODES)
def test_a_cloned_state_continues_identically(mode):
    engine = make_engine("mamba2", mode, eta=1.0)
    frames, actions = frames_and_actions()
    state = engine.start(frames, actions, seeds=0)
    copy = state.clone()
    a = actions.roll(1, 1)
    first = rollout(engine, state, a)
    assert torch.equal(rollout(engine, copy, a), first)
    assert not torch.equal(rollout(engine, state, a), first)  # and the original moved on


def test_indexed_rows_continue_like_the_batch_and_can_be_put_back():
    engine = make_engine("ttt", "chunk", eta=0.5)
    frames, actions = frames_and_actions(batch=3)
    state = engine.start(frames, actions, seeds=[7, 8, 9])
    sub = state[[2, 0]]
    assert sub.batch_size == 2 and sub.frame_index.tolist() == [4, 4]
    ref = rollout(engine, state.clone(), actions)
    out = rollout(engine, sub, actions[[2, 0]])
    torch.testing.assert_close(out.float(), ref[[2, 0]].float(), rtol=0, atol=1.0)
    state[[2, 0]] = sub  # rows now two frames further on
    assert state.frame_index.tolist() == [8, 4, 8]
    with pytest.raises(UserError):
        state[[0]] = sub


def test_state_bytes_per_row_stay_constant_over_a_long_rollout():
    engine = make_engine("lstm", "frame", steps=1)
    frames, actions = frames_and_actions(length=1)
    state = engine.start(frames, actions)
    before = state.nbytes()
    for i in range(40):  # > 10 windows
        engine.step(state, torch.full((B,), i % 6))
    assert state.frame_index.tolist() == [41, 41]
    assert state.nbytes() == before > 0


def test_engine_rejects_wrong_shapes_and_actions():
    engine = make_engine("lstm", "frame")
    frames, actions = frames_and_actions()
    with pytest.raises(UserError, match="uint8"):
        engine.start(frames.float(), actions)
    with pytest.raises(UserError, match="H = W = 8"):
        engine.start(torch.zeros(2, 4, 16, 16, 3, dtype=torch.uint8), actions)
    with pytest.raises(UserError, match=r"actions must be integer \(2, 4\)"):
        engine.start(frames, actions[:, :3])
    with pytest.raises(UserError, match=r"in \[0, 6\)"):
        engine.start(frames, actions + 6)
    state = engine.start(frames, actions)
    with pytest.raises(UserError, match="rows"):
        engine.observe(state, frames[:1, 0], actions[:1, 0])
    with pytest.raises(UserError, match="seeds"):
        engine.init_state(2, seeds=[1, 2, 3])


def test_state_moves_between_devices_and_back():
    engine = make_engine("lstm", "chunk")
    frames, actions = frames_and_actions()
    state = engine.start(frames, actions, seeds=0)
    moved = state.to("cpu")
    assert isinstance(moved, WorldState) and moved is not state
    assert torch.equal(rollout(engine, moved, actions), rollout(engine, state, actions))


@pytest.mark.parametrize("mode", MODES)
def test_bfloat16_autocast_keeps_the_state_in_float32_and_frames_close(mode):
    full = make_engine("lstm", mode)
    low = RolloutEngine(full.world, SamplerConfig(steps=3), compute_dtype=torch.bfloat16)
    frames, actions = frames_and_actions(length=5)
    states = [engine.start(frames, actions, seeds=0) for engine in (full, low)]
    outs = [rollout(engine, state, actions).float() for engine, state in zip((full, low), states)]
    low_state = states[1]
    tensors = [*low_state.keys, *low_state.values,
               *(s for layer in low_state.memory for s in layer)]
    assert all(t.dtype == torch.float32 for t in tensors)
    assert not torch.equal(outs[0], outs[1])  # autocast did run in bfloat16
    assert (outs[0] - outs[1]).abs().mean() < 2.0  # uint8 levels


@pytest.mark.parametrize("memory,mode,prev_frame", [
    *((m, "frame", "none") for m in MEMORIES), ("lstm", "chunk", "none"), ("lstm", "frame", "input")])
def test_linear_layers_cast_once_give_autocast_s_latents_bit_for_bit(memory, mode, prev_frame):
    full = make_engine(memory, mode, prev_frame=prev_frame)
    low = RolloutEngine(full.world, SamplerConfig(steps=3), compute_dtype=torch.bfloat16)
    reference = RolloutEngine(full.world, SamplerConfig(steps=3), compute_dtype=torch.bfloat16)
    reference.model = full.world.model  # float32 weights: autocast casts them on every call
    assert low.model is not full.world.model
    assert all(p.dtype == torch.float32 for p in full.world.model.parameters())  # untouched
    assert low.model.blocks[0].spatial.qkv.weight.dtype == torch.bfloat16
    frames, actions = frames_and_actions(length=5)  # past the window: memory writes run too
    states = [engine.start(frames, actions, seeds=0) for engine in (low, reference)]
    latents = [torch.stack([engine.step_latents(state, actions[:, i]).latent for i in range(5)])
               for engine, state in zip((low, reference), states)]
    assert torch.equal(latents[0], latents[1])
    for mine, theirs in zip(states[0]._tensors(), states[1]._tensors()):
        assert mine.dtype == theirs.dtype and torch.equal(mine, theirs)


def test_compiled_frame_pass_equals_eager_or_falls_back():
    eager = make_engine("lstm", "frame", steps=2)
    compiled = RolloutEngine(eager.world, SamplerConfig(steps=2), compile=True)
    frames, actions = frames_and_actions(length=2)  # two context lengths: two graphs
    outs = [rollout(engine, engine.start(frames, actions, seeds=0), actions).float()
            for engine in (eager, compiled)]
    # compiled (or, where this machine cannot compile, fallen back to eager): the same frames
    assert (outs[0] - outs[1]).abs().max() <= 1.0  # uint8 levels: float reassociation only


@pytest.mark.parametrize("mode", MODES)
def test_the_whole_ring_as_context_equals_the_frames_in_the_window(mode):
    # the compiled engine's context: every frame attends over all window - 1 ring slots, the empty
    # ones masked; the same frames as the eager engine's shortest context, to float rounding
    short = make_engine("lstm", mode, steps=2)
    ring = RolloutEngine(short.world, SamplerConfig(steps=2))
    ring.static_context = True
    frames, actions = frames_and_actions(length=6)  # 1 real frame, then 5 imagined: the
    outs = [rollout(engine, engine.start(frames[:, :1], actions[:, :1], seeds=0), actions[:, 1:])
            .float() for engine in (short, ring)]  # window (3) fills up, then slides
    assert (outs[0] - outs[1]).abs().max() <= 1.0  # uint8 levels


def test_the_memory_read_of_a_plan_equals_a_step():
    torch.manual_seed(0)
    lstm = LSTMMemory(12, 8)
    u = torch.randn(5, 12)
    state = tuple(torch.randn(5, 8) for _ in range(2))
    assert torch.allclose(lstm.read(u, lstm.read_plan(state)), lstm.step(u, state)[0], atol=1e-6)


def test_a_failing_compile_falls_back_to_eager(caplog):
    eager = make_engine("lstm", "frame", steps=2)
    broken = RolloutEngine(eager.world, SamplerConfig(steps=2), compile=True)

    def no_compiler(*args):
        raise RuntimeError("no C++ compiler found")

    broken._frame_pass = no_compiler
    frames, actions = frames_and_actions(length=4)
    with caplog.at_level("WARNING"):
        out = rollout(broken, broken.start(frames, actions, seeds=0), actions)
    assert "no C++ compiler found" in caplog.text and not broken.compiled
    assert torch.equal(out, rollout(eager, eager.start(frames, actions, seeds=0), actions))


def test_start_encodes_the_context_a_time_step_at_a_time_with_the_same_latents():
    from world_model.loading import SHIPPED_WORLD, load_engine

    if not (SHIPPED_WORLD / "config.json").is_file():
        pytest.skip("no shipped world")
    engine = load_engine(SHIPPED_WORLD, steps=2, dtype="float32")  # a VAE world: batched convs
    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (3, 4, 64, 64, 3), dtype=torch.uint8, generator=g)
    actions = torch.randint(0, 6, (3, 4), generator=g)
    state = engine.start(frames, actions, seeds=0)
    whole = engine.start_latents(engine.codec.encode(frames), actions, seeds=0)  # all 12 at once
    assert torch.equal(state.prev, whole.prev)
    for mine, theirs in zip(state.keys, whole.keys):
        assert torch.equal(mine, theirs)
