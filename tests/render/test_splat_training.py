"""Gaussian training: densification operations keep the optimizer in step, the opacity reset fires
(unlike gsplat 1.5.3's), exact resume, the CLI end to end on a Blender folder made here, and (slow)
reconstruction of a captured MuJoCo scene."""

import json
import math
import subprocess
import sys

import pytest
import torch

from render.gaussians.model import GaussianModel
from render.gaussians.strategy import (
    DensifyConfig,
    DensifyState,
    duplicate,
    make_optimizer,
    prune,
    refine_step,
    split,
)

LRS = {"means": 1e-3, "log_scales": 1e-3, "quats": 1e-3, "opacity_logits": 1e-3, "sh0": 1e-3, "shN": 1e-3}


def _stepped(n=6):
    g = GaussianModel.random_in_sphere(n, 1.0, sh_degree=1, seed=0)
    opt = make_optimizer(g, LRS)
    sum(p.sum() for p in g.parameters()).backward()
    opt.step()
    return g, opt


def test_duplicate_split_prune_keep_adam_state_aligned():
    g, opt = _stepped()
    means0 = g.means.detach().clone()
    avg0 = opt.state[g.means]["exp_avg"].clone()
    duplicate(g, opt, torch.tensor([True, False, False, True, False, False]))
    assert len(g) == 8 and torch.equal(g.means[6:].detach(), means0[[0, 3]])
    st = opt.state[g.means]["exp_avg"]
    assert torch.equal(st[:6], avg0) and (st[6:] == 0).all()
    assert all(group["params"][0] is getattr(g, group["name"]) for group in opt.param_groups)
    log_s = g.log_scales.detach().clone()
    split(
        g,
        opt,
        torch.tensor([False, True, False, False, False, False, False, False]),
        generator=torch.Generator().manual_seed(0),
    )
    assert len(g) == 9  # one removed, two added at the end
    torch.testing.assert_close(g.log_scales[-2:].detach(), (log_s[1] - math.log(1.6)).expand(2, 3))
    # the halves are drawn from the parent: within a few of its standard deviations
    assert ((g.means[-2:].detach() - means0[1]).abs() < 5 * log_s[1].exp()).all()
    assert opt.state[g.log_scales]["exp_avg"].shape == (9, 3) and (opt.state[g.log_scales]["exp_avg"][-2:] == 0).all()
    keep = g.means.detach()[1:].clone()
    prune(g, opt, torch.tensor([True] + [False] * 8))
    assert torch.equal(g.means.detach(), keep) and opt.state[g.means]["exp_avg"].shape == (8, 3)
    sum(p.sum() for p in g.parameters()).backward()
    opt.step()  # the optimizer still works on the edited tensors


def test_refine_step_clones_small_splits_large_and_resets_opacity():
    g = GaussianModel.random_in_sphere(4, 1.0, sh_degree=0, seed=0)
    with torch.no_grad():
        g.log_scales[:2] = math.log(0.001)  # small -> clone
        g.log_scales[2:] = math.log(0.5)  # large -> split
        g.opacity_logits[:] = 2.0
    opt = make_optimizer(g, LRS)
    state = DensifyState(4)
    state.grad2d[:] = torch.tensor([1.0, 0.0, 1.0, 0.0])
    state.count[:] = 1
    cfg = DensifyConfig(refine_start_iter=0, refine_every=10, reset_every=30)
    info = refine_step(g, opt, state, 10, cfg, scene_scale=1.0)
    assert info["cloned"] == 1 and info["split"] == 1 and len(g) == 6  # 4 + 1 copy - 1 split + 2 halves
    assert state.grad2d.shape == (6,) and (state.grad2d == 0).all()
    # kept: the unchanged small 0 and 1, the untouched large 3, the clone of 0; then the two halves of 2
    small, large = math.log(0.001), math.log(0.5)
    expect = torch.tensor([small, small, large, small, large - math.log(1.6), large - math.log(1.6)])
    torch.testing.assert_close(g.log_scales[:, 0].detach(), expect)
    info = refine_step(g, opt, state, 30, cfg, scene_scale=1.0)
    assert info["reset"] == 1
    assert torch.allclose(g.opacities.detach(), torch.full((len(g),), 0.01), atol=1e-6)  # 2 x prune_opa


def test_state_update_scales_gradients_like_gsplat():
    s = DensifyState(3)
    m = torch.zeros(1, 3, 2, requires_grad=True)
    (m * torch.tensor([[[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]]])).sum().backward()
    s.update(m, torch.tensor([[1.0, 1.0, 0.0]]), width=10, height=20)
    torch.testing.assert_close(s.grad2d, torch.tensor([5.0, 20.0, 0.0]))  # x * W/2, y * H/2; invisible ignored
    torch.testing.assert_close(s.count, torch.tensor([1.0, 1.0, 0.0]))


def _tiny_cfg(data, out, **kw):
    from render.gaussians.train import SplatTrainConfig

    dens = DensifyConfig(refine_start_iter=2, refine_every=3, reset_every=5)
    return SplatTrainConfig(data=data, out=out, steps=8, init_points=300, densify=dens, save_every=4, log_every=1,
                            sh_degree=1, sh_degree_every=4, **kw)  # fmt: skip


@pytest.fixture
def one_thread():
    """The rasterizer's index_add accumulates in thread order; one thread makes runs bitwise equal."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_resume_is_exact(tmp_path, plane_scene, one_thread):
    from render.gaussians.train import SplatTrainer

    full = SplatTrainer(_tiny_cfg(plane_scene, tmp_path / "a"))
    full.run(progress=False)
    log = [json.loads(ln) for ln in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert sum(r["cloned"] + r["split"] for r in log) > 0  # densification ran, driven by the means2d gradient
    first = SplatTrainer(_tiny_cfg(plane_scene, tmp_path / "b"))
    first.run(progress=False, until=4)  # between refinements: the gradient statistics are mid-way
    second = SplatTrainer(_tiny_cfg(plane_scene, tmp_path / "b"))
    second.resume(second.latest())  # the gradient statistics come back with the Gaussians
    assert second.state.grad2d.abs().sum() > 0
    torch.testing.assert_close(second.state.grad2d, first.state.grad2d)
    torch.testing.assert_close(second.state.count, first.state.count)
    second = SplatTrainer(_tiny_cfg(plane_scene, tmp_path / "b"))
    second.run(progress=False)
    assert second.step == 8 and len(second.model) == len(full.model)
    for k, v in full.model.parameter_dict().items():
        torch.testing.assert_close(getattr(second.model, k), v, msg=k)


def test_splat_cli_on_a_blender_folder(tmp_path):
    from test_datasets import make_blender

    make_blender(tmp_path / "lego", n=(4, 1, 2), size=24)
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "render.cli", "splat"]
    out = subprocess.run(cmd + ["train", "--data", str(tmp_path / "lego"), "--out", str(run), "--steps", "4",
                                "--init-points", "200", "--sh-degree", "1", "--save-every", "2"],
                         capture_output=True, text=True)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads((run / "eval_test.json").read_text())["results"]
    assert {"psnr", "ssim", "lpips", "num_rays_per_sec", "fps"} <= set(res) and res["lpips"] is None
    assert (run / "checkpoints" / "step_0000004" / "gaussians.ply").is_file()
    out = subprocess.run(cmd + ["video", "--checkpoint", str(run), "--out", str(tmp_path / "o.mp4"), "--frames", "3"],
                         capture_output=True, text=True)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    import imageio.v3 as iio

    assert iio.imread(tmp_path / "o.mp4").shape[:3] == (3, 24, 24)
    out = subprocess.run(cmd + ["eval", "--checkpoint", str(tmp_path)], capture_output=True, text=True)
    assert out.returncode == 2 and "no Gaussians in" in out.stderr and len(out.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_reconstructs_a_captured_scene(tmp_path):
    """A MuJoCo PickCube capture (24 views, 48 px; 21 train, 3 held out) trained for 600 steps reaches
    >= 15 dB PSNR on its held-out views (17.8 dB measured, 23.3 dB on the training views; 6.4 dB
    before the Jacobian clamp)."""
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
    from capture_scene import capture

    from render.datasets import load_dataset
    from render.gaussians.cli import evaluate_splats
    from render.gaussians.train import SplatTrainConfig, SplatTrainer

    path = capture("PickCube", 24, 48, tmp_path / "scene", holdout=8)
    dens = DensifyConfig(refine_start_iter=100, refine_every=100, reset_every=3000)
    cfg = SplatTrainConfig(data=path, out=tmp_path / "run", steps=600, init_points=4000, save_every=10**6,
                           densify=dens)  # fmt: skip
    trainer = SplatTrainer(cfg)
    trainer.run(progress=False)
    res = evaluate_splats(trainer.model, load_dataset(path, "test"), progress=False)
    assert res["psnr"] >= 15.0, res
