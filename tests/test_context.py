"""Training context that matches inference: the 'clean' and 'augmented' training passes equal what
the rollout engine computes, frame by frame; the previous frame stacked into the tokens; the
noise-level distributions and the loss spaces of x-prediction."""

from __future__ import annotations

import pytest
import torch
from model_utils import MEMORIES, MODES, tiny_engine, tiny_model

from world_model.config import DiffusionConfig, ModelConfig, RunConfig, SamplerConfig
from world_model.diffusion.samplers import DDIMSampler
from world_model.diffusion.schedule import Diffusion
from world_model.engine.rollout import RolloutEngine
from world_model.errors import CheckpointError, UserError
from world_model.latents import PixelCodec
from world_model.network.model import RADModel
from world_model.network.windows import has_previous, previous_frames, teacher_mask, temporal_mask
from world_model.training.objective import Batch, WorldModelObjective

B, T = 2, 8
ATOL = 2e-5


def engine_for(model: RADModel, diffusion: DiffusionConfig) -> RolloutEngine:
    return tiny_engine(model, diffusion, steps=3)


def sequence(seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(B, T, 3, 8, 8, generator=g)          # clean context frames
    x = torch.randn(B, T, 3, 8, 8, generator=g)          # a noisy version of every frame
    k = torch.randint(1, 1001, (B, T), generator=g)      # its level
    a = torch.randint(0, 6, (B, T), generator=g)
    return z, x, k, a


# -- masks and previous frames ---------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_teacher_mask_lets_noisy_frames_see_only_their_clean_window_and_themselves(mode):
    W = 3
    m = teacher_mask(T, W, mode)
    base = temporal_mask(T, W, mode)
    assert m.shape == (2 * T, 2 * T)
    assert torch.equal(m[:T, :T], base)                        # clean stream: the usual window
    assert not m[:T, T:].any()                                 # nothing clean sees a noisy frame
    assert torch.equal(m[T:, T:], torch.eye(T, dtype=torch.bool))  # a noisy frame sees itself
    assert torch.equal(m[T:, :T], base & ~torch.eye(T, dtype=torch.bool))  # and its clean past


@pytest.mark.parametrize("mode", MODES)
def test_previous_frames_are_the_frame_before_inside_the_window(mode):
    z = torch.arange(1, T + 1).float().view(1, T, 1, 1, 1).expand(1, T, 3, 2, 2)
    prev = previous_frames(z, 3, mode)[0, :, 0, 0, 0]
    ok = has_previous(torch.arange(T), 3, mode)
    expected = torch.where(ok, torch.arange(T).float(), torch.zeros(T))  # frame i-1 has value i
    assert torch.equal(prev, expected)
    assert not ok[0] and ok[1]
    if mode == "chunk":
        assert not ok[3] and not ok[6]  # a chunk's first frame sees nothing of the chunk before


# -- the clean-context training pass equals the engine ---------------------------------------------
@pytest.mark.parametrize("prev_frame", ("none", "input", "residual"))
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("memory", MEMORIES)
def test_clean_context_training_pass_equals_the_engine_at_every_frame(memory, mode, prev_frame):
    model = tiny_model(memory, mode, prev_frame=prev_frame)
    engine = engine_for(model, DiffusionConfig(prediction="x0", context="clean"))
    z, x, k, a = sequence()
    with torch.no_grad():
        reads, _ = model.prefetch(z, a)
        prev = previous_frames(z, model.cfg.window, mode) if model.uses_prev else None
        noisy, ctx = model.forward_context(x, k, z, torch.zeros_like(k), a, reads, prev)
        state = engine.init_state(B, seeds=0)
        for t in range(T):
            cached = engine.predict(state, x[:, t], k[:, t], a[:, t])
            torch.testing.assert_close(cached.prediction[:, 0], noisy.prediction[:, t],
                                       rtol=0, atol=ATOL)
            info = engine.observe_latents(state, z[:, t], a[:, t])
            torch.testing.assert_close(info.reward, ctx.reward[:, t], rtol=0, atol=ATOL)


@pytest.mark.parametrize("mode", MODES)
def test_augmented_context_training_pass_equals_the_engine_with_its_noised_context(mode):
    model = tiny_model("lstm", mode, prev_frame="input")
    diffusion = DiffusionConfig(prediction="x0", context="augmented", context_level=150)
    engine = engine_for(model, diffusion)
    z, x, k, a = sequence(1)
    seen, preds = [], []
    with torch.no_grad():
        state = engine.init_state(B, seeds=0)
        for t in range(T):
            preds.append(engine.predict(state, x[:, t], k[:, t], a[:, t]).prediction[:, 0])
            engine.observe_latents(state, z[:, t], a[:, t])
            seen.append(state.prev.clone())  # the context frame as the engine noised it
        context = torch.stack(seen, 1)
        assert not torch.allclose(context, z)  # the engine did noise its context
        reads, _ = model.prefetch(z, a)        # the memory is written from the clean frames
        levels = torch.full_like(k, 150)
        noisy, _ = model.forward_context(x, k, context, levels, a, reads,
                                         previous_frames(context, model.cfg.window, mode))
    torch.testing.assert_close(torch.stack(preds, 1), noisy.prediction, rtol=0, atol=ATOL)


def test_independent_context_with_previous_frame_equals_the_engine():
    """Diffusion forcing with the previous clean frame stacked: a noisy frame against a clean
    window is what the engine runs (the windowed pass with clean context frames)."""
    model = tiny_model("lstm", "frame", prev_frame="input")
    engine = engine_for(model, DiffusionConfig(prediction="x0"))
    z, x, k, a = sequence(2)
    with torch.no_grad():
        state = engine.start_latents(z[:, :5], a[:, :5], seeds=0)
        cached = engine.predict(state, x[:, 5], k[:, 5], a[:, 5]).prediction[:, 0]
        seq = torch.cat([z[:, :5], x[:, 5:6]], 1)
        levels = torch.cat([torch.zeros(B, 5, dtype=torch.long), k[:, 5:6]], 1)
        reads, _ = model.prefetch(seq, a[:, :6])
        full = model(seq, levels, a[:, :6], reads, previous_frames(z[:, :6], 3, "frame"))
    torch.testing.assert_close(cached, full.prediction[:, 5], rtol=0, atol=ATOL)


def test_a_noised_inference_context_keeps_the_stacked_previous_frame_as_training_saw_it():
    """Sampling with SamplerConfig.context_level > 0 noises the context frames (their keys/values);
    the previous frame stacked into the tokens stays the clean one for a world trained with
    'independent' context (training stacks the clean frame) and is the noised one for
    'augmented' (training stacks the noised context stream's)."""
    model = tiny_model("lstm", "frame", prev_frame="input")
    z, _x, _k, a = sequence(3)
    for context, noised in (("independent", False), ("augmented", True)):
        diffusion = DiffusionConfig(prediction="x0", context=context)
        engine = RolloutEngine(engine_for(model, diffusion).world,
                               SamplerConfig(steps=3, context_level=50))
        with torch.no_grad():
            state = engine.start_latents(z[:, :4], a[:, :4], seeds=0)
        assert torch.equal(state.prev, z[:, 3]) is not noised, context


def test_residual_prediction_starts_as_a_copy_of_the_previous_frame():
    model = tiny_model("lstm", "frame", prev_frame="residual", randomize=False)
    engine = engine_for(model, DiffusionConfig(prediction="x0", context="clean"))
    frames = torch.randint(0, 256, (B, 3, 8, 8, 3), dtype=torch.uint8)
    state = engine.start(frames, torch.zeros(B, 3, dtype=torch.long), seeds=0)
    out, _ = engine.step(state, torch.ones(B, dtype=torch.long))
    assert torch.equal(out, frames[:, -1])  # an untrained residual world repeats the last frame


def test_models_that_stack_the_previous_frame_refuse_a_pass_without_it():
    model = tiny_model("none", "frame", prev_frame="input")
    _z, x, k, a = sequence()
    with pytest.raises(ValueError, match="previous frames"):
        model(x, k, a)


def test_residual_needs_x0_prediction():
    data = RunConfig(model=ModelConfig(prev_frame="residual")).to_dict()
    with pytest.raises(CheckpointError, match="x0"):
        RunConfig.from_dict(data)
    data["diffusion"]["prediction"] = "x0"
    assert RunConfig.from_dict(data).model.prev_frame == "residual"


def test_old_configs_load_with_the_old_behaviour():
    data = RunConfig().to_dict()
    for key in ("loss_space", "level_sampling", "context", "context_level"):
        del data["diffusion"][key]
    del data["model"]["prev_frame"]
    cfg = RunConfig.from_dict(data)
    assert (cfg.diffusion.context, cfg.diffusion.loss_space, cfg.model.prev_frame) == (
        "independent", "prediction", "none")
    assert cfg.diffusion.engine_context_level == 0


# -- objective: levels, loss spaces, every context trains ------------------------------------------
def test_logit_normal_levels_focus_where_the_mean_puts_them():
    g = torch.Generator().manual_seed(0)
    high = Diffusion(DiffusionConfig(level_sampling="logit_normal", level_mean=1.0, clean_prob=0))
    low = Diffusion(DiffusionConfig(level_sampling="logit_normal", level_mean=-1.0, clean_prob=0))
    lh, ll = high.sample_levels((20000,), g), low.sample_levels((20000,), g)
    assert lh.min() >= 1 and lh.max() <= 1000 and ll.min() >= 1
    assert lh.float().mean() > 650 and ll.float().mean() < 350
    uniform = Diffusion(DiffusionConfig(clean_prob=0.5)).sample_levels((20000,), g)
    assert 0.45 < (uniform == 0).float().mean() < 0.55


def test_v_space_loss_of_x0_prediction_is_the_x0_error_over_sigma_squared():
    diffusion = Diffusion(DiffusionConfig(prediction="x0", loss_space="v", v_loss_min_sigma=0.05))
    x0, noise = torch.zeros(1, 2, 3, 4, 4), torch.randn(1, 2, 3, 4, 4)
    output = torch.full_like(x0, 0.1)             # x0 error 0.1 everywhere: MSE 0.01
    levels = torch.tensor([[500, 1]])               # sigma ~0.7 and sigma < 0.05 (clamped)
    _, s = diffusion.coefficients(levels)
    expected = (0.01 / s[0, 0] ** 2 + 0.01 / 0.05 ** 2) / 2
    assert s[0, 1] < 0.05
    torch.testing.assert_close(diffusion.loss(output, x0, noise, levels), expected)
    # the same output's v error, computed directly, agrees at the unclamped level
    a = diffusion.coefficients(levels)[0][0, 0]
    x_t = a * x0[:, :1] + s[0, 0] * noise[:, :1]
    v_hat = (a * x_t - output[:, :1]) / s[0, 0]
    v = (a * x_t - x0[:, :1]) / s[0, 0]
    torch.testing.assert_close((v_hat - v).pow(2).mean(), 0.01 / s[0, 0] ** 2)


@pytest.mark.parametrize("context", ("independent", "clean", "augmented"))
def test_every_context_trains_and_its_reward_head_learns(context):
    torch.manual_seed(0)
    model = tiny_model("lstm", "frame", prev_frame="residual", randomize=False).train()
    diffusion = Diffusion(DiffusionConfig(prediction="x0", context=context, loss_space="v"))
    objective = WorldModelObjective(model, diffusion, PixelCodec())
    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (2, 6, 8, 8, 3), dtype=torch.uint8, generator=g)
    batch = Batch(frames, torch.randint(0, 6, (2, 6), generator=g), torch.ones(2, 6))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    logs0 = objective(batch, torch.Generator().manual_seed(0))[1]
    for _ in range(60):
        loss, _ = objective(batch, torch.Generator().manual_seed(0))
        opt.zero_grad()
        loss.backward()
        opt.step()
    logs1 = objective(batch, torch.Generator().manual_seed(0))[1]
    assert logs1["loss/diffusion"] < 0.7 * logs0["loss/diffusion"]
    assert logs1["loss/reward"] < 0.5 * logs0["loss/reward"]


def test_bfloat16_training_pass_runs_and_keeps_float32_gradients():
    model = tiny_model("lstm", "frame", prev_frame="input").train()
    objective = WorldModelObjective(model, Diffusion(DiffusionConfig(prediction="x0",
                                                                     context="clean")),
                                    PixelCodec(), precision="bfloat16")
    frames = torch.randint(0, 256, (2, 5, 8, 8, 3), dtype=torch.uint8)
    loss, _ = objective(Batch(frames, torch.zeros(2, 5, dtype=torch.long), torch.zeros(2, 5)))
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert all(p.grad is None or p.grad.dtype == torch.float32 for p in model.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_invalid_diffusion_settings_are_refused_by_name():
    with pytest.raises(UserError, match="context"):
        DiffusionConfig(context="noisy").validate()
    with pytest.raises(UserError, match="context_level"):
        DiffusionConfig(context_level=5000).validate()


# -- x0 with a skip connection, and clipping --------------------------------------------------------
def test_ddim_with_an_oracle_recovers_the_frame_through_the_skip_connection():
    diffusion = Diffusion(DiffusionConfig(prediction="x0", skip_sigma=0.2))
    sampler = DDIMSampler(diffusion, SamplerConfig(steps=5))
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(3, 3, 8, 8, generator=g) * 2 - 1
    x = torch.randn(3, 3, 8, 8, generator=g)
    for level, next_level in sampler.pairs():
        lv = torch.full((3,), level)
        a, s = diffusion.coefficients(lv)
        eps = (x - a.view(-1, 1, 1, 1) * x0) / s.view(-1, 1, 1, 1)
        oracle = diffusion.target(x0[:, None], eps[:, None], lv[:, None])[:, 0]
        x = sampler.update(x, oracle, level, next_level)
    torch.testing.assert_close(x, x0, rtol=0, atol=1e-4)


def test_skip_connection_passes_a_nearly_clean_input_through_and_ignores_it_at_pure_noise():
    diffusion = Diffusion(DiffusionConfig(prediction="x0", skip_sigma=0.2))
    x_t, output = torch.full((1, 2, 3, 4, 4), 0.5), torch.full((1, 2, 3, 4, 4), -0.5)
    x0 = diffusion.predicted_x0(x_t, output, torch.tensor([[1, 1000]]))
    torch.testing.assert_close(x0[0, 0], x_t[0, 0], atol=5e-3, rtol=0)     # level 1: the input
    torch.testing.assert_close(x0[0, 1], output[0, 1], atol=1e-3, rtol=0)  # level K: the output
    # the loss is the error of that predicted frame
    noise = torch.randn_like(x_t)
    levels = torch.tensor([[300, 700]])
    exact = diffusion.target(torch.zeros_like(x_t), noise, levels)
    assert float(diffusion.loss(exact, torch.zeros_like(x_t), noise, levels)) < 1e-10


def test_sampler_clips_predicted_frames_to_the_codec_range():
    diffusion = Diffusion(DiffusionConfig(prediction="x0"))
    clipped = DDIMSampler(diffusion, SamplerConfig(steps=2), value_range=(-1.0, 1.0))
    free = DDIMSampler(diffusion, SamplerConfig(steps=2, clip=False), value_range=(-1.0, 1.0))
    x, wild = torch.randn(2, 3, 4, 4), torch.full((2, 3, 4, 4), 3.0)
    assert float(clipped.update(x, wild, 500, 0).max()) == 1.0
    assert float(free.update(x, wild, 500, 0).max()) == 3.0


def test_rho_spaces_ddim_levels_towards_clean_and_keeps_them_distinct():
    diffusion = Diffusion(DiffusionConfig())
    even = DDIMSampler(diffusion, SamplerConfig(steps=4)).levels.tolist()
    low = DDIMSampler(diffusion, SamplerConfig(steps=4, rho=3.0)).levels.tolist()
    assert even == [1000, 750, 500, 250, 0] and low == [1000, 422, 125, 16, 0]
    dense = DDIMSampler(diffusion, SamplerConfig(steps=1000, rho=3.0)).levels.tolist()
    assert dense == list(range(1000, -1, -1))
    with pytest.raises(UserError, match="rho"):
        SamplerConfig(rho=0).validate()
