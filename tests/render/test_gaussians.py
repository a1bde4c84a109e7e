"""3D Gaussians: the reference rasterizer against closed forms (one isotropic Gaussian's
footprint, depth-ordered compositing of two), finite differences in float64, projected means
against Camera.project, SH against its defining polynomials, and the PLY layout."""

import math

import numpy as np
import pytest
import torch

from render.gaussians.model import GaussianModel
from render.gaussians.ply import load_ply, property_names, save_ply
from render.gaussians.rasterize import ALPHA_MIN, EPS2D, rasterize, rasterize_torch
from render.gaussians.sh import C0, C1, eval_sh, num_sh_bases, rgb_to_sh0
from worldline import Camera


def _gaussians(means, scales, colors, opacity, quats=None, degree=0, dtype=torch.float32):
    n = len(means)
    means = torch.as_tensor(means, dtype=dtype)
    log_scales = torch.log(torch.as_tensor(scales, dtype=dtype)).expand(n, 3).clone()
    q = (
        torch.tensor([1.0, 0, 0, 0], dtype=dtype).expand(n, 4).clone()
        if quats is None
        else torch.as_tensor(quats, dtype=dtype)
    )
    op = torch.as_tensor(opacity, dtype=dtype).expand(n)
    logits = torch.log(op / (1 - op))
    sh0 = rgb_to_sh0(torch.as_tensor(colors, dtype=dtype))[:, None]
    shN = torch.zeros(n, num_sh_bases(degree) - 1, 3, dtype=dtype)
    return GaussianModel(means, log_scales, q, logits, sh0, shN, degree)


def _camera(size=32, f=40.0, dtype=torch.float32):
    K = torch.tensor([[f, 0, size / 2], [0, f, size / 2], [0, 0, 1]], dtype=dtype)
    return Camera(K, torch.eye(4, dtype=dtype), size, size)


@pytest.mark.parametrize("o", [0.8, 0.1])  # 0.1: alpha falls to 1/255 inside 3 sigma (at 2.55 sigma)
def test_single_isotropic_gaussian_footprint(o):
    z, s, f, size = 4.0, 0.1, 40.0, 32
    g = _gaussians([[0.0, 0.0, z]], [[s]], [[0.2, 0.4, 0.9]], o)
    out = rasterize_torch(g, _camera(size, f), background=torch.ones(3))
    var = (f * s / z) ** 2 + EPS2D  # EWA: J Sigma J^T at the optical axis, plus the low-pass
    uv = torch.stack(torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="xy"), -1)
    d2 = ((uv - size / 2) ** 2).sum(-1)
    alpha = o * torch.exp(-0.5 * d2 / var)
    in_ellipse = d2 <= 9 * var  # drawn: within 3 sigma, where alpha >= 1/255
    alpha = torch.where((alpha >= ALPHA_MIN) & in_ellipse, alpha, torch.zeros_like(alpha))
    torch.testing.assert_close(out["alpha"], alpha, atol=1e-6, rtol=1e-5)
    expect_rgb = alpha[..., None] * torch.tensor([0.2, 0.4, 0.9]) + (1 - alpha[..., None])
    torch.testing.assert_close(out["rgb"], expect_rgb, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out["depth"][alpha > 0], torch.full_like(out["depth"][alpha > 0], z))
    assert out["alpha"][0, 0] == 0 and (out["alpha"] > 0).sum() == (alpha > 0).sum()


def test_anisotropic_gaussian_footprint():
    """An elongated Gaussian on the optical axis: 2D covariance diag((f sx / z)^2, (f sy / z)^2) + 0.3,
    drawn inside its 3-sigma ellipse."""
    z, o, f, size = 4.0, 0.8, 40.0, 64
    sx, sy = 1.0, 0.05
    g = _gaussians([[0.0, 0.0, z]], [[sx, sy, sy]], [[1.0, 1.0, 1.0]], o)
    out = rasterize_torch(g, _camera(size, f))
    vx, vy = (f * sx / z) ** 2 + EPS2D, (f * sy / z) ** 2 + EPS2D
    uv = torch.stack(torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="xy"), -1) - size / 2
    alpha = o * torch.exp(-0.5 * (uv[..., 0] ** 2 / vx + uv[..., 1] ** 2 / vy))
    in_ellipse = uv[..., 0] ** 2 / vx + uv[..., 1] ** 2 / vy <= 9
    alpha = torch.where((alpha >= ALPHA_MIN) & in_ellipse, alpha, torch.zeros_like(alpha))
    torch.testing.assert_close(out["alpha"], alpha, atol=1e-6, rtol=1e-5)
    assert float(out["alpha"][32, 32 + 25]) > 0.02  # 2.5 sigma along the long axis is still drawn


def test_two_gaussians_composite_in_depth_order():
    red, blue = [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]
    bg = torch.tensor([0.0, 1.0, 0.0])
    cam = _camera()
    for near_first in (True, False):
        means = [[0.0, 0.0, 3.0], [0.02, 0.0, 5.0]] if near_first else [[0.02, 0.0, 5.0], [0.0, 0.0, 3.0]]
        colors = [red, blue] if near_first else [blue, red]
        scales = [[0.3], [0.5]] if near_first else [[0.5], [0.3]]
        g = _gaussians(means, scales, colors, 0.7)
        out = rasterize_torch(g, cam, background=bg)
        one = rasterize_torch(_gaussians([[0.0, 0.0, 3.0]], [[0.3]], [red], 0.7), cam, background=bg)
        two = rasterize_torch(_gaussians([[0.02, 0.0, 5.0]], [[0.5]], [blue], 0.7), cam, background=bg)
        a1, a2 = one["alpha"], two["alpha"]
        expect = a1[..., None] * torch.tensor(red) + (1 - a1[..., None]) * (
            a2[..., None] * torch.tensor(blue) + (1 - a2[..., None]) * bg)  # fmt: skip
        torch.testing.assert_close(out["rgb"], expect, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out["alpha"], 1 - (1 - a1) * (1 - a2), atol=1e-6, rtol=1e-5)
        w1, w2 = a1, (1 - a1) * a2
        torch.testing.assert_close(out["depth"], (w1 * 3 + w2 * 5) / (w1 + w2).clamp_min(1e-10), atol=1e-4, rtol=1e-4)
    centre = out["rgb"][16, 16]
    assert centre[0] > centre[2]  # the near red one dominates whichever order the inputs come in


def test_transmittance_cutoff_stops_compositing():
    cam = _camera()
    means, colors = [[0.0, 0.0, 2.0], [0.0, 0.0, 3.0], [0.0, 0.0, 4.0]], [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
    black = torch.zeros(3)
    alphas = [float(rasterize_torch(_gaussians([m], [[1.0]], [c], 0.985), cam, background=black)["alpha"][16, 16])
              for m, c in zip(means, colors)]  # fmt: skip
    t2 = (1 - alphas[0]) * (1 - alphas[1])
    assert t2 > 1e-4 > t2 * (1 - alphas[2])  # the third layer would take T below 1e-4 ...
    out = rasterize_torch(_gaussians(means, [[1.0]] * 3, colors, 0.985), cam, background=black)
    c = out["rgb"][16, 16]
    assert float(c[2]) == 0.0  # ... so it is not drawn (without the cut-off: T2 * alpha3 = 2e-4)
    assert float(out["alpha"][16, 16]) == pytest.approx(1 - t2, abs=1e-6)
    assert float(c[1]) == pytest.approx((1 - alphas[0]) * alphas[1], rel=1e-5)


def test_projected_means_equal_camera_project():
    from worldline.transforms import look_at

    g = GaussianModel.random_in_sphere(50, 0.5, seed=1)
    w2c = look_at(torch.tensor([0.3, -2.5, 1.0]), torch.zeros(3), torch.tensor([0.0, 0.0, 1.0]))
    cam = Camera.from_fov(0.9, 40, 30, w2c=w2c)
    out = rasterize_torch(g, cam)
    uv, _ = cam.project(g.means.detach())
    torch.testing.assert_close(out["means2d"], uv, atol=1e-4, rtol=1e-5)


# large, nearly opaque layers: at 0.98 x12 three take T below 1e-4 (the third ends 3 pixels); at
# 0.995 x8 alpha also reaches the 0.99 cap
@pytest.mark.parametrize(("opacity", "size"), [(0.6, 1.0), (0.98, 12.0), (0.995, 8.0)])
def test_gradients_match_finite_differences(opacity, size):
    torch.manual_seed(0)
    dtype = torch.float64
    means = [[0.05, -0.02, 2.0], [-0.1, 0.05, 2.6], [0.02, 0.1, 3.1]]
    scales = (size * torch.tensor([[0.08, 0.05, 0.1], [0.1, 0.12, 0.06], [0.07, 0.07, 0.15]])).tolist()
    colors = [[0.9, 0.2, 0.1], [0.1, 0.8, 0.3], [0.2, 0.3, 0.9]]
    quats = [[0.9, 0.1, -0.2, 0.3], [0.7, 0.3, 0.4, -0.1], [1.0, 0.0, 0.2, 0.1]]
    g = _gaussians(means, scales, colors, opacity, quats=quats, degree=1, dtype=dtype)
    with torch.no_grad():
        g.shN.normal_(0, 0.1)
    cam = _camera(16, 12.0, dtype)
    weights = torch.rand(16, 16, 3, dtype=dtype)

    def f(*params):
        m = GaussianModel(*params, 1)
        for name, p in zip(g.parameter_dict(), params):  # keep the graph to the inputs
            delattr(m, name)
            setattr(m, name, p)
        out = rasterize_torch(m, cam, background=torch.tensor([0.3, 0.3, 0.3], dtype=dtype))
        return (out["rgb"] * weights).sum() + (out["depth"] * out["alpha"]).sum() * 0.1

    params = tuple(p.detach().clone().requires_grad_(True) for p in g.parameter_dict().values())
    assert torch.autograd.gradcheck(f, params, eps=1e-6, atol=1e-5, rtol=1e-3)


def test_sh_matches_polynomials():
    d = torch.nn.functional.normalize(torch.randn(20, 3, dtype=torch.float64), dim=-1)
    coeffs = torch.zeros(20, 16, 3, dtype=torch.float64)
    coeffs[:, 0] = 1.0
    torch.testing.assert_close(eval_sh(coeffs, d, 0), torch.full((20, 3), C0 + 0.5, dtype=torch.float64))
    coeffs[:, 3, 1] = 1.0  # the x-term of degree 1, green only: -C1 x
    torch.testing.assert_close(eval_sh(coeffs, d, 1)[:, 1], (C0 - C1 * d[:, 0] + 0.5).clamp_min(0))
    # orthonormality of the basis over the sphere (Monte Carlo)
    from render.gaussians.sh import sh_basis

    u = torch.nn.functional.normalize(torch.randn(400000, 3, dtype=torch.float64), dim=-1)
    b = sh_basis(u, 3)
    gram = 4 * math.pi * (b.T @ b) / len(u)
    torch.testing.assert_close(gram, torch.eye(16, dtype=torch.float64), atol=0.03, rtol=0)


def test_ply_round_trip_and_layout(tmp_path):
    g = GaussianModel.random_in_sphere(100, 1.0, sh_degree=3, seed=2)
    with torch.no_grad():
        g.shN.normal_()
        g.quats.normal_()
    save_ply(g, tmp_path / "g.ply")
    header = (tmp_path / "g.ply").read_bytes().split(b"end_header\n")[0].decode()
    names = [ln.split()[-1] for ln in header.splitlines() if ln.startswith("property")]
    expect = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2", *[f"f_rest_{i}" for i in range(45)],
              "opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]  # fmt: skip
    assert names == expect == property_names(3)
    assert "format binary_little_endian 1.0" in header and all(ln.startswith("property float") for ln in
                                                                  header.splitlines() if "property" in ln)  # fmt: skip
    back = load_ply(tmp_path / "g.ply")
    for k, v in g.parameter_dict().items():
        assert torch.equal(getattr(back, k), v.detach()), k
    # channel-major f_rest: f_rest_0..14 are red's 15 higher-order coefficients
    raw = np.fromfile(tmp_path / "g.ply", dtype="<f4", offset=len(header) + len("end_header\n"))
    row0 = raw[: len(expect)]
    np.testing.assert_array_equal(row0[9:24], g.shN[0, :, 0].detach().numpy())
    o3d = pytest.importorskip("open3d")
    pc = o3d.io.read_point_cloud(str(tmp_path / "g.ply"))  # an independent PLY reader
    np.testing.assert_allclose(np.asarray(pc.points), g.means.detach().numpy(), atol=1e-6)


def test_ply_errors_name_file_and_property(tmp_path):
    g = GaussianModel.random_in_sphere(10, 1.0, sh_degree=1)
    save_ply(g, tmp_path / "g.ply")
    data = (tmp_path / "g.ply").read_bytes()
    (tmp_path / "short.ply").write_bytes(data[:-7])
    with pytest.raises(ValueError, match="short.ply: truncated"):
        load_ply(tmp_path / "short.ply")
    (tmp_path / "noop.ply").write_bytes(data.replace(b"property float opacity\n", b"property float opacitx\n"))
    with pytest.raises(ValueError, match="noop.ply: missing property 'opacity'"):
        load_ply(tmp_path / "noop.ply")
    row = len(property_names(1)) * 4
    (tmp_path / "short.ply").write_bytes(data[: len(data) - 3 * row - row + 10 * 4 + 2])
    with pytest.raises(ValueError, match=r"truncated at vertex 6 of 10, property 'f_rest_1'"):
        load_ply(tmp_path / "short.ply")
    for bad, message in ((b"property float\n", "malformed header line"), (b"element vertex -3\n", "bad vertex count"),
                         (b"property float x\n", "property 'x' appears twice")):  # fmt: skip
        text = (
            data.replace(b"property float y\n", bad)
            if b"property" in bad
            else data.replace(b"element vertex 10\n", bad)
        )
        (tmp_path / "bad.ply").write_bytes(text)
        with pytest.raises(ValueError, match=message):
            load_ply(tmp_path / "bad.ply")
    (tmp_path / "junk.ply").write_bytes(b"hello")
    with pytest.raises(ValueError, match="junk.ply: not a PLY"):
        load_ply(tmp_path / "junk.ply")


def test_rasterize_rejects_bad_backend_and_size():
    g = GaussianModel.random_in_sphere(5, 1.0)
    cam = _camera()
    with pytest.raises(ValueError, match="backend"):
        rasterize(g, cam, backend="cuda")
    with pytest.raises(ValueError, match="Camera.resize"):
        rasterize(g, cam, 64, 64)
    with pytest.raises(ValueError, match="CUDA only"):
        rasterize(g, cam, backend="gsplat")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="gsplat needs CUDA")
def test_reference_agrees_with_gsplat():
    pytest.importorskip("gsplat")
    from worldline.transforms import look_at

    g = GaussianModel.random_in_sphere(2000, 1.0, seed=3)
    with torch.no_grad():  # anisotropic, rotated, view-dependent: catches layout and sign errors
        g.quats.normal_()
        g.log_scales.add_(torch.randn_like(g.log_scales) * 0.5)
        g.shN.normal_(0, 0.2)
        g.opacity_logits.normal_(0, 1.5)
    g = g.cuda()
    eyes = ([0.3, -3.0, 1.0], [2.5, 1.0, 1.5])
    w2c = torch.stack([look_at(torch.tensor(e), torch.zeros(3), torch.tensor([0.0, 0.0, 1.0])) for e in eyes])
    cams = Camera.from_fov(0.9, 64, 48, w2c=w2c).to("cuda")
    bg = torch.tensor([0.2, 0.4, 0.6], device="cuda")
    ref = rasterize(g, cams, backend="torch", background=bg)
    fast = rasterize(g, cams, backend="gsplat", background=bg)
    assert ref["rgb"].shape == fast["rgb"].shape == (2, 48, 64, 3)
    diff = (ref["rgb"] - fast["rgb"]).abs()
    assert diff.mean() < 2e-3 and torch.quantile(diff.flatten(), 0.99) < 0.02
    assert (ref["alpha"] - fast["alpha"]).abs().mean() < 2e-3
    both = (ref["alpha"] > 0.5) & (fast["alpha"] > 0.5)
    assert (ref["depth"][both] - fast["depth"][both]).abs().mean() < 5e-3
    torch.testing.assert_close(ref["means2d"], fast["means2d"], atol=1e-3, rtol=1e-4)


def test_tiled_reference_equals_dense_compositing():
    """Many overlapping Gaussians across tile borders: the tiled, sorted, segmented compositing equals
    the dense oracle (every Gaussian at every pixel, sorted once)."""
    from render.gaussians.rasterize import rasterize_dense
    from worldline.transforms import look_at

    g = GaussianModel.random_in_sphere(400, 1.0, seed=4)
    with torch.no_grad():
        g.opacity_logits.normal_(0, 2)
        g.quats.normal_()
        g.log_scales.add_(torch.randn_like(g.log_scales) * 0.3)
    w2c = look_at(torch.tensor([0.4, -3.0, 0.9]), torch.zeros(3), torch.tensor([0.0, 0.0, 1.0]))
    cam = Camera.from_fov(0.9, 40, 36, w2c=w2c)  # 3 x 3 tiles, partial ones at the edges
    bg = torch.tensor([0.2, 0.5, 0.9])
    ref = rasterize_torch(g, cam, background=bg)["rgb"]
    dense = rasterize_dense(g, cam, bg)
    assert (ref - dense).abs().max() < 1e-5


@pytest.mark.parametrize("chunk", [1 << 22, 4096])  # 4096: many chunks of tiles
def test_analytic_backward_equals_autograd_of_the_dense_oracle(chunk):
    """float64, several partial tiles, two cameras, opaque overlapping Gaussians (the 1e-4 cut and
    the 0.99 cap both occur): the hand-written compositing backward equals autograd through the
    dense oracle, for every parameter."""
    from render.gaussians.rasterize import rasterize_dense
    from worldline.transforms import look_at

    g = GaussianModel.random_in_sphere(150, 0.6, seed=5).double()
    with torch.no_grad():
        g.opacity_logits.uniform_(2.0, 7.0)  # opacities 0.88 .. 0.999
        g.quats.normal_()
        g.log_scales.add_(0.8 + torch.randn_like(g.log_scales) * 0.3)
        g.shN.normal_(0, 0.1)
    eyes = [[0.4, -3.0, 0.9], [2.5, 1.0, 1.5]]
    w2c = torch.stack([look_at(torch.tensor(e), torch.zeros(3), torch.tensor([0.0, 0.0, 1.0])) for e in eyes])
    cams = Camera.from_fov(0.9, 20, 18, w2c=w2c.double())
    bg = torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64)
    weights = torch.rand(2, 18, 20, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    loss = (rasterize_torch(g, cams, background=bg, chunk=chunk)["rgb"] * weights).sum()
    tiled = torch.autograd.grad(loss, list(g.parameters()))
    dense = torch.stack([rasterize_dense(g, cams[i], bg) for i in range(2)])
    assert (dense.detach() - rasterize_torch(g, cams, background=bg)["rgb"].detach()).abs().max() < 1e-10
    ref = torch.autograd.grad((dense * weights).sum(), list(g.parameters()))
    for name, a, b in zip(g.parameter_dict(), tiled, ref):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9, msg=name)


def test_gaussians_behind_or_on_the_camera_plane_keep_gradients_finite():
    # z = 2e-6 with an x offset: f x / z^2 ~ 1e12, so an unclamped 2D covariance's determinant overflows
    means = [[0.0, 0.0, 3.0], [0.1, 0.0, -0.5], [0.0, 0.1, 1e-9], [0.2, 0.2, 0.004], [0.3, -0.2, 2e-6]]
    g = _gaussians(means, [[0.2]] * 5, [[1, 0, 0]] * 5, 0.5)
    out = rasterize_torch(g, _camera(), background=torch.ones(3))
    (out["rgb"].sum() + out["depth"].sum()).backward()
    for name, p in g.parameter_dict().items():
        assert torch.isfinite(p.grad).all(), name
    assert (out["radii"][1:] == 0).all() and out["radii"][0] > 0  # only the first is drawn
