"""NeRF and ProNeRF: Plücker invariance, projection into neighbour views against an analytic
scene, volume rendering against closed forms, hierarchical sampling, ProNeRF's sampling rules and
training phases, and exact resume."""

import dataclasses
import math

import pytest
import torch
from render_scenes import render_plane, ring_cameras, texture

from render.nerf.config import NerfConfig, NerfTrainConfig
from render.nerf.models import ProNeRF, Scene, VanillaNeRF, bilinear_lookup, neighbour_colours, plucker
from render.nerf.volume import alpha_from_density, composite, intervals, sample_pdf
from worldline import Camera
from worldline.transforms import look_at

UP = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)


def test_plucker_invariant_along_the_ray():
    g = torch.Generator().manual_seed(0)
    o = torch.randn(100, 3, generator=g, dtype=torch.float64)
    d = torch.nn.functional.normalize(torch.randn(100, 3, generator=g, dtype=torch.float64), dim=-1)
    s = torch.randn(100, 1, generator=g, dtype=torch.float64) * 5
    torch.testing.assert_close(plucker(o + s * d, d), plucker(o, d))
    # a parallel ray through another point is another line: its moment differs
    shifted = plucker(o + torch.linalg.cross(d, torch.randn(100, 3, generator=g, dtype=torch.float64)), d)
    assert (shifted[:, 3:] - plucker(o, d)[:, 3:]).norm(dim=-1).min() > 1e-3
    # moment is orthogonal to the direction, and |o x d| is the line's distance to the origin
    pl = plucker(o, d)
    torch.testing.assert_close((pl[:, :3] * pl[:, 3:]).sum(-1), torch.zeros(100, dtype=torch.float64))
    closest = o - (o * d).sum(-1, keepdim=True) * d
    torch.testing.assert_close(pl[:, 3:].norm(dim=-1), closest.norm(dim=-1))


def _plane_cameras(size=64):
    eyes = [(0.3, -1.5, 1.6), (1.4, 0.4, 1.5), (-1.2, 0.9, 1.8), (0.2, 1.6, 1.3)]
    w2c = torch.stack([look_at(torch.tensor(e, dtype=torch.float64), torch.zeros(3, dtype=torch.float64), UP)
                       for e in eyes]).float()  # fmt: skip
    return Camera.from_fov(math.radians(50), size, size, w2c=w2c)


def test_projection_lands_on_the_same_surface_colour():
    cams = _plane_cameras()
    images = torch.stack([render_plane(cams[i]) for i in range(4)])
    # pixels of view A (0) with their true depth: ray-plane intersection
    o, d = cams[0].rays(normalize=True)
    pix = torch.tensor([[26, 30], [32, 32], [38, 35], [30, 40]])
    o, d = o[pix[:, 1], pix[:, 0]], d[pix[:, 1], pix[:, 0]]
    t = -o[:, 2] / d[:, 2]
    points = (o + t[:, None] * d)[:, None]  # [4, 1, 3]
    views = torch.tensor([[1, 2, 3]]).expand(4, 3)
    colours, visible = neighbour_colours(points, views, images, cams)
    assert visible.all()
    expect = texture(points[..., 0].double(), points[..., 1].double()).float()  # [4, 1, 3]
    torch.testing.assert_close(colours, expect[:, None].expand_as(colours), atol=0.02, rtol=0)
    # the coordinates used are Camera.project's: a lookup at Camera.project's uv gives the same colour
    for j, v in enumerate((1, 2, 3)):
        uv, _ = cams[v].project(points[:, 0])
        direct = bilinear_lookup(images, torch.full((4,), v), uv)
        torch.testing.assert_close(colours[:, j, 0], direct)
    # the wrong depth lands elsewhere: the colours disagree with the surface
    wrong = (o + 0.7 * t[:, None] * d)[:, None]
    off, _ = neighbour_colours(wrong, views, images, cams)
    assert (off - expect[:, None]).abs().amax() > 0.1


def test_bilinear_lookup_pixel_centres():
    img = torch.arange(12.0).reshape(1, 3, 4, 1).expand(1, 3, 4, 3)
    uv = torch.tensor([[0.5, 0.5], [1.5, 0.5], [1.0, 0.5], [0.5, 1.0], [3.9, 2.9]])
    vals = bilinear_lookup(img, torch.zeros(5, dtype=torch.long), uv)[:, 0]
    torch.testing.assert_close(vals, torch.tensor([0.0, 1.0, 0.5, 2.0, 11.0]))


def test_invisible_views_take_the_mean_of_the_others():
    cams = _plane_cameras()
    images = torch.stack([render_plane(cams[i]) for i in range(4)])
    eye = cams.center[1].double()
    away = look_at(eye, 2 * eye, UP).float()  # camera 1 turned to look away from the plane
    w2c = cams.w2c.clone()
    w2c[1] = away
    cams = Camera(cams.K, w2c, cams.width, cams.height)
    pts = torch.tensor([[[0.05, -0.1, 0.0]]])  # on the plane, seen by 0, 2 and 3
    colours, visible = neighbour_colours(pts, torch.tensor([[0, 1, 2, 3]]), images, cams)
    assert not visible[0, 1, 0]
    seen = visible[0, :, 0]
    assert seen.any()
    torch.testing.assert_close(colours[0, 1, 0], colours[0, seen, 0].mean(0))


def test_constant_density_slab_matches_closed_form():
    g = torch.Generator().manual_seed(0)
    sigma, t0, t1, far = 1.7, 1.0, 2.5, 4.0
    colour = torch.tensor([0.2, 0.6, 0.9])
    bg = torch.tensor([1.0, 1.0, 1.0])
    # random sample positions; slab edges are sample points, so piecewise-constant compositing is exact
    t = torch.cat(
        [
            torch.rand(20, generator=g) * t0,
            torch.tensor([t0, t1]),
            t0 + torch.rand(50, generator=g) * (t1 - t0),
            t1 + torch.rand(20, generator=g) * (far - t1),
        ]
    )
    t = t.sort().values
    inside = (t >= t0) & (t < t1)
    sig = torch.where(inside, sigma, -3.0)  # raw density: the ReLU makes outside zero
    alpha = alpha_from_density(sig, intervals(t, far))
    out = composite(alpha, colour.expand(len(t), 3), t, bg)
    trans = math.exp(-sigma * (t1 - t0))
    torch.testing.assert_close(out["acc"], torch.tensor(1 - trans))
    torch.testing.assert_close(out["rgb"], colour * (1 - trans) + bg * trans)
    # expected depth: dense samples approach the continuous integral
    td = torch.linspace(0, far, 200001, dtype=torch.float64)
    alpha = alpha_from_density(torch.where((td >= t0) & (td < t1), sigma, 0.0).double(), intervals(td, far))
    dense = composite(alpha, torch.ones(len(td), 3, dtype=torch.float64), td)
    L = t1 - t0
    expect = t0 + 1 / sigma - L * trans / (1 - trans)
    assert float(dense["depth"]) == pytest.approx(expect, abs=1e-3)


def test_density_offset_and_multiplier():
    sig, dt = torch.tensor([0.5, -1.0]), torch.tensor([0.2, 0.3])
    a = alpha_from_density(sig, dt, torch.tensor([1.0, 2.0]), torch.tensor([0.5, -1.0]))
    torch.testing.assert_close(a, torch.tensor([(1 - math.exp(-1.5 * 0.2)) * 0.5, 0.0]))


def test_sample_pdf_follows_the_weights():
    bins = torch.linspace(0, 4, 5).expand(1, 5)
    w = torch.tensor([[0.0, 3.0, 1.0, 0.0]])
    s = sample_pdf(bins, w, 40000, deterministic=False, generator=torch.Generator().manual_seed(0))
    hist = torch.histc(s, 4, 0, 4) / s.numel()
    torch.testing.assert_close(hist, torch.tensor([0.0, 0.75, 0.25, 0.0]), atol=0.01, rtol=0)
    det = sample_pdf(bins, w, 9, deterministic=True)
    inner = det[0, 1:-1]  # u = 0 and u = 1 map to the ends of the (padded) pdf's support
    assert (det[0, 1:] >= det[0, :-1]).all() and inner.min() >= 1.0 and inner.max() <= 3.0


def _scene():
    return Scene(0.5, 4.0, (0.0, 0.0, 0.0), 2.0, (1.0, 1.0, 1.0))


def _small(method="pronerf", **kw):
    return NerfConfig(method=method, field_depth=2, field_width=32, field_skips=(1,), sampler_depth=2,
                      sampler_width=32, refine_depth=2, refine_width=32, coarse_samples=8, fine_samples=16,
                      **kw)  # fmt: skip


def _pronerf():
    torch.manual_seed(0)
    cams = _plane_cameras(16)
    images = torch.stack([render_plane(cams[i]) for i in range(4)])
    cams = Camera(cams.K.expand(5, 3, 3), torch.cat([cams.w2c, cams.w2c[:1]]), 16, 16)
    images = torch.cat([images, images[:1]])
    model = ProNeRF(_small(samples=8), _scene())
    model.set_views(images, cams)
    o, d = cams.rays()
    return model, o[:4].reshape(-1, 3), d[:4].reshape(-1, 3), images[:4].reshape(-1, 3)


def test_pronerf_samples_stay_in_their_bins():
    model, o, d, _ = _pronerf()
    with torch.no_grad():
        for layer in (model.sampler[-1], model.refine[-1]):  # arbitrary outputs, not the initial ones
            layer.weight.normal_(0, 1.0)
            layer.bias.normal_(0, 2.0)
    p = model.propose(o, d, model.nearest_views(o))
    t, s = p["t"], model.scene
    assert p["t"].shape == (o.shape[0], 8)
    assert (t >= s.near).all() and (t <= s.far).all() and (t[:, 1:] >= t[:, :-1]).all()
    assert p["offset"].abs().max() <= model.cfg.offset_scale * s.radius + 1e-6
    counted = {"n": 0}
    hook = model.field.register_forward_hook(
        lambda m, i, out: counted.__setitem__("n", counted["n"] + i[0].shape[:-1].numel())
    )
    model(o, d)
    hook.remove()
    assert counted["n"] == o.shape[0] * model.samples_per_ray == o.shape[0] * 8  # K field evaluations per ray


def test_pronerf_densify_and_jitter():
    model, o, d, _ = _pronerf()
    t = torch.sort(torch.rand(5, 8) * 3 + 0.5, -1).values
    dense = model._densify(t, 4)
    assert dense.shape == (5, 32) and (dense[:, 1:] >= dense[:, :-1]).all()
    assert dense.min() >= model.scene.near and dense.max() <= model.scene.far
    assert torch.isin(t, dense).all()  # the original samples stay
    torch.manual_seed(1)
    t = torch.sort(torch.rand(4000, 8) * 3 + 0.5, -1).values
    j = model._jitter(t)
    assert j.shape == t.shape and j.min() >= model.scene.near and j.max() <= model.scene.far
    assert (j[:, 1:] >= j[:, :-1]).all()
    # each sample moves toward its next (or, per ray, previous) neighbour by min(|N(0,1)|/5, 0.99) of the gap
    nxt, prv = model._gaps(t)
    step = j - t  # sorting keeps the order: a sample never passes a neighbour
    up = (step >= 0).all(-1)
    assert (up | (step <= 0).all(-1)).all() and 0.4 < up.float().mean() < 0.6
    frac = torch.where(up[:, None], step / nxt, -step / prv)
    assert frac.max() <= 0.99 + 1e-5
    # half-normal / 5: mean sqrt(2/pi)/5 = 0.1596, P(frac < 0.2) = P(|z| < 1) = 0.683
    assert float(frac.mean()) == pytest.approx(math.sqrt(2 / math.pi) / 5, abs=0.005)
    assert float((frac < 0.2).float().mean()) == pytest.approx(0.683, abs=0.01)


def test_views_exclude_own_and_pick_nearest():
    model, o, _, _ = _pronerf()
    own = torch.randint(0, 5, (200,))
    views = model.random_views(own)
    assert views.shape == (200, 4) and not (views == own[:, None]).any()
    cams = model.views[1]
    near = model.nearest_views(cams.center[2:3])
    dist = (cams.center - cams.center[2]).norm(dim=-1)
    assert set(near[0].tolist()) == set(dist.argsort()[:4].tolist())


def test_exploration_trains_only_the_field_exploitation_all():
    model, o, d, target = _pronerf()
    own = torch.zeros(o.shape[0], dtype=torch.long)
    for step, phase in ((1, "explore"), (2, "exploit"), (10, "finetune")):
        model.zero_grad(set_to_none=True)
        loss, m, group = model.training_step(o, d, target, step, own=own, finetune=step >= 10)
        loss.backward()
        assert model.phase(step, step >= 10) == phase
        sampler_grad = model.sampler[0].weight.grad
        if phase == "explore":
            assert group == "field" and sampler_grad is None and model.refine[0].weight.grad is None
            assert m["explore_samples"] % 8 == 0 and 8 <= m["explore_samples"] <= 64
        else:
            assert group == "all" and sampler_grad is not None and sampler_grad.abs().sum() > 0
        assert model.field.trunk[0].weight.grad.abs().sum() > 0


def test_vanilla_counts_and_shapes():
    torch.manual_seed(0)
    model = VanillaNeRF(_small("vanilla"), _scene())
    assert model.samples_per_ray == 8 + 8 + 16
    o = torch.zeros(5, 3)
    d = torch.nn.functional.normalize(torch.randn(5, 3), dim=-1)
    out = model(o, d, perturb=True)
    assert out["rgb"].shape == (5, 3) and out["rgb_coarse"].shape == (5, 3)
    assert ((out["depth"] >= 0.5) & (out["depth"] <= 4.0)).all()


@pytest.mark.parametrize("method", ["pronerf", "vanilla"])
def test_resume_is_exact(tmp_path, method, plane_scene):
    from render.nerf.train import NerfTrainer

    data = plane_scene
    cfg = NerfTrainConfig(data=data, model=_small(method), steps=6, batch_rays=64, save_every=3, log_every=1,
                          out=tmp_path / "a", finetune_fraction=0.34)  # fmt: skip
    NerfTrainer(cfg).run(progress=False)
    full = NerfTrainer(cfg)
    full.resume(full.latest())
    b = dataclasses.replace(cfg, out=tmp_path / "b", steps=6)
    first = NerfTrainer(b)
    first.run(progress=False, until=1)  # stops after one step...
    assert first.step == 1
    second = NerfTrainer(b)
    second.run(progress=False)  # ...and resumes to the end
    for k, v in full.model.state_dict().items():
        torch.testing.assert_close(second.model.state_dict()[k], v, msg=k)
    lines = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    assert [int(ln.split('"step": ')[1].split("}")[0].split(",")[0]) for ln in lines] == [1, 2, 3, 4, 5, 6]


def test_pronerf_multiplier_zero_renders_background():
    model, o, d, _ = _pronerf()
    k = model.cfg.samples
    with torch.no_grad():
        model.sampler[-1].weight[2 * k : 3 * k].zero_()
        model.sampler[-1].bias[2 * k : 3 * k] = -5.0  # relu(multiplier) = 0: every alpha vanishes
        out = model(o, d)
    torch.testing.assert_close(out["rgb"], torch.ones_like(out["rgb"]))  # the white background
    torch.testing.assert_close(out["acc"], torch.zeros_like(out["acc"]))
    with torch.no_grad():
        model.sampler[-1].bias[2 * k : 3 * k] = 1.0
        assert float(model(o, d)["acc"].min()) > 0  # and with multiplier 1 the field shows


def test_exploitation_trains_refine_and_aux_colours_finetune_does_not():
    model, o, d, target = _pronerf()
    own = torch.zeros(o.shape[0], dtype=torch.long)
    k = model.cfg.samples
    for step, finetune in ((2, False), (4, True)):
        model.zero_grad(set_to_none=True)
        loss, _, _ = model.training_step(o, d, target, step, own=own, finetune=finetune)
        loss.backward()
        refine_rgb = model.refine[-1].weight.grad[4 * k :].abs().sum()
        aux_rgb = model.sampler[-1].weight.grad[3 * k :].abs().sum()
        depth_rows = model.refine[-1].weight.grad[:k].abs().sum()
        assert depth_rows > 0  # the refined depths learn in both
        if finetune:
            assert refine_rgb == 0 and aux_rgb == 0
        else:
            assert refine_rgb > 0 and aux_rgb > 0


def test_render_image_planar_depth():
    from render.nerf.evaluate import render_image

    cam = ring_cameras(1, 12)[0]

    class PlaneDistance(torch.nn.Module):
        """Reports the distance along each (unit) ray to the plane z = 0."""

        samples_per_ray = 1

        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(()))

        def forward(self, o, d):
            t = -o[:, 2] / d[:, 2]
            return {"rgb": torch.zeros_like(o), "depth": t, "acc": torch.ones_like(t)}

    depth = render_image(PlaneDistance(), cam, chunk=50)["depth"]
    o, d = cam.rays(normalize=False)  # planar: z-component 1, so t is the planar depth
    torch.testing.assert_close(depth, -o[..., 2] / d[..., 2])


def test_trim_log_keeps_lines_up_to_the_checkpoint(tmp_path):
    from render.checkpoints import trim_log

    log = tmp_path / "metrics.jsonl"
    log.write_text('{"step": 1}\n{"step": 2}\n{"step": 3}\n{"ste')  # the last line torn by a kill
    trim_log(log, 2)
    assert log.read_text() == '{"step": 1}\n{"step": 2}\n'
