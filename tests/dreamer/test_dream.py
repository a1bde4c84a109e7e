import json
import subprocess
import sys

import pytest
import torch

from render.dreamer.dream import DreamConfig, Dreamer
from render.dreamer.judge import judge
from render.dreamer.scenes import COLOURS, Prompt, primitive_gaussians
from render.dreamer.tiny_prior import HaarAutoencoder, TinyPrior, TinyPriorConfig, ddpm_alphas_cumprod


class OraclePrior:
    """A prior that knows the clean image x0 (one colour everywhere): eps_hat = (x_t - sqrt(abar) x0)
    / sqrt(1 - abar). SDS with it is an L2 pull of every render towards x0 (the SDS/x0 identity)."""

    builtin = False

    def __init__(self, colour, size=16, space="pixel"):
        self.alphas_cumprod = ddpm_alphas_cumprod(1000, 1e-4, 0.02)
        self.image_size = size
        self.ae = HaarAutoencoder() if space == "latent" else None
        img = torch.tensor(colour)[:, None, None].expand(3, size, size)[None] * 2 - 1
        self.x0 = img if self.ae is None else self.ae.encode(img)
        self.calls = 0
        self.ts = []

    def encode(self, rgb):
        x = rgb * 2 - 1
        return x if self.ae is None else self.ae.encode(x)

    def predict_noise(self, x_t, t, text, guidance_scale=1.0):
        self.calls += 1
        self.ts.append(t.clone())
        a = self.alphas_cumprod[t].float().reshape(-1, 1, 1, 1)
        return (x_t - a.sqrt() * self.x0) / (1 - a).sqrt()


def _cfg(**kw):
    base = dict(steps=150, batch=2, init_points=300, stage2_fraction=0.0, seed=0, max_gaussians=1200, render_scale=1)
    cfg = DreamConfig(**{**base, **kw})
    cfg.densify.refine_start_iter = cfg.densify.refine_every = 20
    return cfg


@pytest.mark.parametrize("colour", ["red", "blue"])
def test_distillation_follows_the_prior(colour):
    d = Dreamer(_cfg(prompt=f"a {colour} sphere"), priors=(OraclePrior(COLOURS[colour]), None))
    before = judge(d.model, Prompt(colour, None), n_views=4, size=32)
    d.run(progress=False)
    after = judge(d.model, Prompt(colour, None), n_views=4, size=32)
    assert after.colour == colour and after.colour_share > 0.9, after
    assert before.colour_share < 0.9 or before.colour != colour  # it was not that colour to begin with
    assert d.log[-1]["stage"] == 1 and len(d.log) == 15


def _mean_colour(model):
    from render.dreamer.judge import _render, judge_cameras

    rgb, alpha = _render(model, judge_cameras(4, 32))
    fg = alpha > 0.5
    return (rgb[fg] / alpha[fg][:, None]).mean(0)


def test_two_stages_hand_over_the_same_gaussians():
    red, blue = OraclePrior(COLOURS["red"]), OraclePrior(COLOURS["blue"], space="latent")
    d = Dreamer(_cfg(prompt="a red cube", steps=200, stage2_fraction=0.5), priors=(red, blue))
    model = d.model
    while d.step < 100:
        d.log.append(d.train_step())
    after_stage1 = _mean_colour(d.model)
    while d.step < 200:
        d.log.append(d.train_step())
    after_stage2 = _mean_colour(d.model)
    stages = [r["stage"] for r in d.log]
    assert stages == [1] * 100 + [2] * 100
    assert red.calls == 100 and blue.calls == 100
    assert d.model is model  # carried over, not re-initialised
    # densification continued into stage 2 (Gaussians were cloned or split there)
    assert sum(r["cloned"] + r["split"] for r in d.log if r["stage"] == 2) > 0
    # stage 1 made it red; stage 2 (the latent prior) moved the same Gaussians towards blue
    assert after_stage1[0] > 2 * after_stage1[2], after_stage1
    assert after_stage2[2] - after_stage2[0] > after_stage1[2] - after_stage1[0] + 0.2, (after_stage1, after_stage2)


def test_the_prior_sees_annealed_timesteps():
    """The timesteps the prior is actually asked about: linear annealing walks them down to t_min;
    the fixed range does not."""
    prior = OraclePrior(COLOURS["red"])
    Dreamer(_cfg(steps=100, schedule="linear", batch=4), priors=(prior, None)).run(progress=False)
    ts = torch.stack(prior.ts).float()  # [steps, batch]
    hi = torch.tensor([0.98 - 0.96 * s / 99 for s in range(100)]) * 999
    assert (ts <= hi[:, None] + 1).all() and (ts >= 0.02 * 999 - 1).all()
    assert ts[:20].mean() > 350 and ts[-20:].mean() < 100 and (ts[-1] <= 21).all()
    fixed = OraclePrior(COLOURS["red"])
    Dreamer(_cfg(steps=100, schedule="fixed", batch=4), priors=(fixed, None)).run(progress=False)
    ts = torch.stack(fixed.ts).float()
    assert ts[-20:].mean() > 350 and ts.max() > 900


def test_schedule_progress_per_run_and_per_stage():
    """0 at the first step and 1 at the last: of the run, or of each stage with the restart; a
    one-step stage sits at the schedule's start. Configs that leave no stage 1, or restart without
    a stage 2, are one-line errors."""
    run = DreamConfig(steps=10, stage2_fraction=0.3)  # 7 + 3 steps
    assert [run.schedule_progress(i) for i in range(10)] == pytest.approx([i / 9 for i in range(10)])
    per_stage = DreamConfig(steps=10, stage2_fraction=0.3, restart_schedule=True)
    expected = [i / 6 for i in range(7)] + [0.0, 0.5, 1.0]
    assert [per_stage.schedule_progress(i) for i in range(10)] == pytest.approx(expected)
    one = DreamConfig(steps=10, stage2_fraction=0.1, restart_schedule=True)
    assert one.schedule_progress(8) == 1.0 and one.schedule_progress(9) == 0.0
    with pytest.raises(ValueError, match="leaves no stage-1 step"):
        DreamConfig(steps=3, stage2_fraction=0.9)
    with pytest.raises(ValueError, match="restart_schedule: needs a stage 2"):
        DreamConfig(stage2_fraction=0.0, restart_schedule=True)


def test_restart_schedule_anneals_again_in_stage_2():
    """The timesteps the latent prior is actually asked about: with ``restart_schedule`` they are
    large again at the start of stage 2 and at t_min at its end; without it they stay below stage
    1's last t_max."""
    seen = {}
    for restart in (False, True):
        pixel, latent = OraclePrior(COLOURS["red"]), OraclePrior(COLOURS["red"], space="latent")
        cfg = _cfg(steps=40, stage2_fraction=0.5, batch=4, init_points=50, restart_schedule=restart)
        Dreamer(cfg, priors=(pixel, latent)).run(progress=False)
        seen[restart] = torch.stack(latent.ts).float()  # [20 steps, 4]
    assert seen[False].shape == seen[True].shape == (20, 4)
    assert seen[False].max() <= (0.98 - 0.96 * 20 / 39) * 999 + 1  # continues below t_max(20/39) = 0.49
    hi = torch.tensor([0.98 - 0.96 * i / 19 for i in range(20)]) * 999  # stage 2's own 0.98 -> 0.02
    assert (seen[True] <= hi[:, None] + 1).all() and (seen[True] >= 0.02 * 999 - 1).all()
    assert seen[True][:8].max() > 0.6 * 999 and (seen[True][-1] <= 21).all()


class _RecordingTinyPrior(TinyPrior):
    """A small random tiny prior that records how it was asked for eps."""

    def __init__(self, space):
        super().__init__(TinyPriorConfig(space=space, channels=[8, 16, 16], emb_dim=16))
        self.modes = []

    def predict_noise(self, x_t, t, text, guidance_scale=1.0, composable=False):
        self.modes.append(composable)
        return super().predict_noise(x_t, t, text, guidance_scale, composable)


def test_guidance_mode_per_stage_and_its_errors():
    pixel, latent = _RecordingTinyPrior("pixel").eval(), _RecordingTinyPrior("latent").eval()
    cfg = _cfg(steps=6, stage2_fraction=0.5, init_points=50, guidance_mode2="composable")
    Dreamer(cfg, priors=(pixel, latent)).run(progress=False)
    assert pixel.modes == [False] * 3 and latent.modes == [True] * 3
    # the defaults: joint in both stages
    pixel, latent = _RecordingTinyPrior("pixel").eval(), _RecordingTinyPrior("latent").eval()
    Dreamer(_cfg(steps=4, stage2_fraction=0.5, init_points=50), priors=(pixel, latent)).run(progress=False)
    assert pixel.modes == [False] * 2 and latent.modes == [False] * 2
    with pytest.raises(ValueError, match="guidance_mode2: expected joint or composable, got 'sum'"):
        DreamConfig(guidance_mode2="sum")
    with pytest.raises(ValueError, match="guidance_mode composable: needs a built-in .*pixel prior, got OraclePrior"):
        Dreamer(_cfg(guidance_mode="composable"), priors=(OraclePrior(COLOURS["red"]), None))
    with pytest.raises(ValueError, match="guidance_mode2 composable: needs a built-in .*latent prior"):
        Dreamer(_cfg(stage2_fraction=0.5, guidance_mode2="composable"),
                priors=(pixel, OraclePrior(COLOURS["red"], space="latent")))  # fmt: skip


def test_learned_background_survives_densification():
    d = Dreamer(_cfg(steps=60, background="learned"), priors=(OraclePrior(COLOURS["red"]), None))
    before = d.bg_param.detach().clone()
    d.run(progress=False)
    assert any(r["cloned"] + r["split"] + r["pruned"] for r in d.log)  # refinement ran
    assert d.bg_param.shape == (3,) and not torch.equal(before, d.bg_param.detach())  # and it was trained


class _RecordingOracle(OraclePrior):
    def encode(self, rgb):
        self.seen = rgb.detach().clone()
        return super().encode(rgb)


@pytest.mark.parametrize("k", [2, 3])
def test_render_scale_gives_the_prior_the_area_average_of_a_finer_render(k):
    """With ``render_scale`` k the prior gets the k x k block means of a render at k times its size
    (checked against a render made here at that size from the same cameras and backgrounds, and
    averaged with numpy), not a render at its own size and not a subsampled one."""
    import numpy as np

    from render.dreamer.scenes import sample_cameras
    from render.gaussians.rasterize import rasterize_torch

    prior = _RecordingOracle(COLOURS["red"], size=16)
    d = Dreamer(_cfg(render_scale=k, batch=2), priors=(prior, None))
    gen = torch.Generator()
    gen.set_state(d.gen.get_state())
    cams = sample_cameras(2, 16 * k, d.cfg.cameras, gen)
    bg = torch.rand(2, 3, generator=gen)
    with torch.no_grad():
        fine = np.stack([rasterize_torch(d.model, c, background=b)["rgb"].numpy() for c, b in zip(cams, bg)])
    d.train_step()
    want = fine.reshape(2, 16, k, 16, k, 3).mean((2, 4)).transpose(0, 3, 1, 2)
    assert prior.seen.shape == (2, 3, 16, 16)
    np.testing.assert_allclose(prior.seen.numpy(), want, atol=2e-5)
    assert np.abs(fine[:, ::k, ::k].transpose(0, 3, 1, 2) - want).max() > 1e-3  # subsampling would differ


def test_render_scale_keeps_the_densification_statistics_in_ndc_units():
    """The mean screen-space gradient (what ``grow_grad2d`` is compared with) converges as the
    render gets finer: it is about the same at render_scale 2 and 4 (the loss is on the same prior
    pixels; the statistics are in NDC), and a 1x render, coarser, reads somewhat higher (about 10 %).
    Normalising by the prior's size instead of the render's would halve it from 2x to 4x
    and double 1x against 2x."""
    stats = {}
    for k in (1, 2, 4):
        d = Dreamer(_cfg(render_scale=k, batch=2), priors=(OraclePrior(COLOURS["red"], size=32), None))
        d.train_step()
        visible = d.state.count > 0
        stats[k] = (d.state.grad2d[visible] / d.state.count[visible]).mean().item()
    assert 0.85 < stats[4] / stats[2] < 1.15, stats
    assert 1.0 < stats[1] / stats[2] < 1.2, stats


def test_render_scale_is_not_applied_to_a_large_prior(capsys):
    """A prior over 64 px (Stable Diffusion's 512 px input) is rendered at its own size, whatever
    ``render_scale`` says; a 64 px one (IF stage I) is supersampled. A warning only when no prior
    of the run is supersampled; in a mixed run each stage renders at its own size."""
    for size, render_size in ((64, 128), (72, 72)):
        prior = _RecordingOracle(COLOURS["red"], size=size)
        d = Dreamer(_cfg(render_scale=2, batch=1), priors=(prior, None))
        assert d.train_step()["render_size"] == render_size
        assert prior.seen.shape == (1, 3, size, size)
        warned = capsys.readouterr().err
        assert (warned != "") == (size == 72), warned
        if warned:
            assert "render_scale 2 has no effect: every prior's input is over 64 px (72)" in warned, warned
    d = Dreamer(_cfg(render_scale=1, batch=1), priors=(OraclePrior(COLOURS["red"], size=72), None))
    assert d.train_step()["render_size"] == 72 and capsys.readouterr().err == ""  # nothing to warn about
    pixel, latent = OraclePrior(COLOURS["red"], size=32), OraclePrior(COLOURS["red"], size=72, space="latent")
    d = Dreamer(_cfg(render_scale=2, batch=1, steps=2, stage2_fraction=0.5), priors=(pixel, latent))
    assert [d.train_step()["render_size"] for _ in range(2)] == [64, 72] and capsys.readouterr().err == ""


def test_config_errors():
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match=f"render_scale: must be an integer >= 1, got {bad}"):
            DreamConfig(render_scale=bad)
    with pytest.raises(ValueError, match="stage2_fraction"):
        DreamConfig(stage2_fraction=1.0)
    with pytest.raises(ValueError, match="background"):
        DreamConfig(background="green")
    with pytest.raises(ValueError, match="time schedule"):
        DreamConfig(schedule="cosine")
    with pytest.raises(ValueError, match="weighting"):
        DreamConfig(weighting="x")


def test_judge_classifies_ground_truth_primitives():
    for colour in ("red", "green", "cyan"):
        for shape in ("cube", "sphere", "cylinder"):
            v = judge(primitive_gaussians(Prompt(colour, shape, "small"), seed=5, jitter=0.1), Prompt(colour, shape))
            assert v.match and v.per_view_match >= 0.75, (colour, shape, v)
    wrong = judge(primitive_gaussians(Prompt("red", "sphere", "large")), Prompt("blue", "cube"))
    assert not wrong.match and wrong.colour == "red" and wrong.shape == "sphere" and wrong.per_view_match == 0
    # negative controls: the untrained initial ball and a grey cube match no colour prompt
    from render.dreamer.dream import initial_gaussians

    ball = judge(initial_gaussians(DreamConfig(seed=0)), Prompt("magenta", "sphere"))
    assert not ball.match and ball.colour in ("grey", "none"), ball
    grey = primitive_gaussians(Prompt("red", "cube"))
    with torch.no_grad():
        grey.sh0.zero_()  # SH 0 -> rgb 0.5: grey
    v = judge(grey, Prompt("red", "cube"))
    assert v.colour == "grey" and v.shape == "cube" and not v.match
    empty = primitive_gaussians(Prompt("red", "cube"))
    with torch.no_grad():
        empty.opacity_logits.fill_(-9.0)  # nothing is drawn
    v = judge(empty, Prompt("red", "cube"), n_views=2)
    assert not v.match and v.coverage == 0 and v.per_view_match == 0 and v.colour == v.shape == "none"


def test_judge_ignores_silhouettes_cut_by_the_frame():
    """A blue sphere blown up to fill every view is not "a blue cube" (its silhouette is the square
    frame); the large ground-truth primitives (the small ones: the test above) stay inside every
    judge view; a floater pixel on the border does not void a view, a cut-off silhouette does."""
    from render.dreamer.judge import cut_by_frame

    masks = torch.zeros(4, 32, 32, dtype=torch.bool)
    masks[:, 10:20, 10:20] = True  # an object in the middle of every view
    masks[1, 0, 5] = masks[1, 31, 31] = True  # + two floater pixels on the border
    masks[2, 12:22, 0:6] = True  # + a second object cut by the left edge (10 border pixels)
    masks[3, 0:32, 0:32] = True  # fills the frame
    assert cut_by_frame(masks).tolist() == [False, False, True, True]
    for shape in ("cube", "sphere", "cylinder"):
        v = judge(primitive_gaussians(Prompt("red", shape, "large"), seed=3), Prompt("red", shape))
        assert v.match and v.truncated_views == 0, (shape, v)
    g = primitive_gaussians(Prompt("blue", "sphere", "large"), seed=3)
    with torch.no_grad():
        g.means.mul_(6.0)
        g.log_scales.add_(1.8)
    v = judge(g, Prompt("blue", "cube"))
    assert v.coverage > 0.95 and v.truncated_views == 8 and v.colour == "blue"
    assert v.shape == "none" and not v.match and v.per_view_match == 0


def test_cli_writes_outputs_and_rejects_bad_input(tmp_path):
    pixel, latent = tmp_path / "pixel.safetensors", tmp_path / "latent.safetensors"
    TinyPrior(TinyPriorConfig(channels=[8, 16, 16], emb_dim=16)).save(pixel)
    TinyPrior(TinyPriorConfig(space="latent", channels=[8, 16, 16], emb_dim=16)).save(latent)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "render.cli", "dream", "a red cube", "--steps", "4", "--batch", "1",
           "--prior", str(pixel), "--latent-prior", str(latent), "--out", str(out), "--video-frames", "3"]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert {p.name for p in out.iterdir()} >= {"gaussians.ply", "orbit.mp4", "grid.png", "dream.json"}
    report = json.loads((out / "dream.json").read_text())
    assert report["result"]["steps"] == 4 and {"colour", "shape", "match", "saturation"} <= set(report["judge"])
    from render.gaussians.ply import load_ply

    assert len(load_ply(out / "gaussians.ply")) == report["result"]["gaussians"]
    for bad, msg in ((["--prior", str(tmp_path / "missing")], "missing: no such prior"),
                     (["--latent-prior", str(pixel)], "pixel-space prior, but a latent-space one")):  # fmt: skip
        args = ["dream", "a red cube", "--prior", str(pixel), "--latent-prior", str(latent), *bad]
        res = subprocess.run([sys.executable, "-m", "render.cli", *args], capture_output=True, text=True, timeout=120)
        assert res.returncode == 2 and msg in res.stderr and "Traceback" not in res.stderr, res.stderr


class ViewRecordingPrior(OraclePrior):
    """An oracle prior that says it is camera-conditioned and records the views it is given."""

    camera_conditioned = True

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.views = []

    def predict_noise(self, x_t, t, text, guidance_scale=1.0, view=None):
        self.views.append(view)
        return super().predict_noise(x_t, t, text, guidance_scale)


def test_a_camera_conditioned_prior_gets_each_rendered_view(monkeypatch):
    """The camera of every render, as (elevation, azimuth), in order: the cameras are made from
    known angles, a different pair each (the angles are the oracle), in both stages; a plain prior
    gets no ``view`` argument at all (OraclePrior.predict_noise would reject it)."""
    import math

    import render.dreamer.dream as dream_module
    from render.dreamer.scenes import orbit_camera

    made = []

    def cameras(n, size, ranges, generator):
        out = []
        for _ in range(n):
            el, az = -5.0 + 3.0 * len(made), -170.0 + 19.0 * len(made)  # 18 cameras: az stays in (-180, 180)
            made.append((math.radians(el), math.radians(az)))
            out.append(orbit_camera(el, az, 2.8, 45.0, size))
        return out

    monkeypatch.setattr(dream_module, "sample_cameras", cameras)
    for stage2 in (0.0, 0.5):
        made.clear()
        first, second = ViewRecordingPrior(COLOURS["red"]), ViewRecordingPrior(COLOURS["red"], space="latent")
        d = Dreamer(_cfg(steps=6, batch=3, stage2_fraction=stage2), priors=(first, second))
        d.run(progress=False)
        views = first.views + second.views
        assert len(views) == 6 and len(second.views) == (3 if stage2 else 0)
        torch.testing.assert_close(torch.cat(views), torch.tensor(made), atol=1e-5, rtol=0)
    Dreamer(_cfg(steps=2), priors=(OraclePrior(COLOURS["red"]), None)).run(progress=False)
