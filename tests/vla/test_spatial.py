import math

import gymnasium as gym
import numpy as np
import pytest
import torch

import envs  # noqa: F401
from envs.cameras import CameraSpec
from vla.spatial import SpatialEncoding, fourier_features, keypoint_points, lift_depth, pool_points
from worldline.camera import Camera


def test_pool_points_averages_valid_pixels_only():
    g = torch.Generator().manual_seed(0)
    pts = torch.randn(2, 8, 8, 3, generator=g)
    valid = torch.rand(2, 8, 8, generator=g) > 0.4
    valid[1, :4, :4] = False  # an empty region: top-left cell of a 2x2 grid
    cell, cell_valid = pool_points(pts, valid, 2)
    assert cell.shape == (2, 4, 3) and cell_valid.shape == (2, 4)
    for n in range(2):
        for r in range(2):
            for c in range(2):
                m = valid[n, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4]
                p = pts[n, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4][m]
                assert bool(cell_valid[n, 2 * r + c]) == bool(m.any())
                if m.any():
                    torch.testing.assert_close(cell[n, 2 * r + c], p.mean(0))


def test_fourier_features_closed_form():
    x = torch.tensor([[0.5, -0.25, 0.0]])
    f = fourier_features(x, 2)
    assert f.shape == (1, 3 + 12)
    expected = [0.5, -0.25, 0.0]
    expected += [math.sin(v * w) for v in (0.5, -0.25, 0.0) for w in (math.pi, 2 * math.pi)]
    expected += [math.cos(v * w) for v in (0.5, -0.25, 0.0) for w in (math.pi, 2 * math.pi)]
    torch.testing.assert_close(f[0], torch.tensor(expected))


def test_spatial_encoding_uses_no_depth_vector_and_gets_gradients():
    enc = SpatialEncoding(16, num_freqs=4)
    with torch.no_grad():
        enc.no_depth.fill_(7.0)
    g = torch.Generator().manual_seed(0)
    inside = enc.low + torch.rand(5, 3, generator=g) * (enc.high - enc.low)  # in the workspace box
    pts = inside.clone().requires_grad_(True)
    valid = torch.tensor([True, False, True, False, True])
    out = enc(pts, valid)
    assert out.shape == (5, 16)
    assert torch.equal(out[1], torch.full((16,), 7.0)) and not torch.equal(out[0], out[1])
    out.sum().backward()
    assert enc.no_depth.grad is not None and enc.mlp[0].weight.grad.abs().sum() > 0
    assert pts.grad[1].abs().sum() == 0 and pts.grad[0].abs().sum() > 0  # invalid cells ignore their points


def test_points_far_outside_the_workspace_are_clamped():
    enc = SpatialEncoding(8)
    far = torch.tensor([[5.0, 0.0, 0.2], [50.0, 0.0, 0.2]])
    out = enc(far, torch.ones(2, dtype=torch.bool))
    torch.testing.assert_close(out[0], out[1])  # both beyond the box edge: the same encoding


def test_small_init_barely_perturbs_features():
    enc = SpatialEncoding(64)
    out = enc(torch.rand(100, 3), torch.ones(100, dtype=torch.bool))
    assert out.abs().max() < 0.05


@pytest.fixture(scope="module")
def two_views():
    """One scene, two cameras 70 degrees apart, rendered by MuJoCo."""
    cams = (CameraSpec("a", azimuth=20.0, elevation=40.0), CameraSpec("b", azimuth=90.0, elevation=30.0))
    env = gym.make("MVBench/CubeInBowl-v0", cameras=cams, width=96, height=96)
    obs, _ = env.reset(seed=3)
    env.close()
    return {n: {k: torch.as_tensor(v) for k, v in obs["cameras"][n].items()} for n in ("a", "b")}


def _matches(views, frame):
    """Lifted points of camera a's pixels, and camera b's point map sampled (bilinearly) exactly
    where a's point projects into b, keeping spots both cameras see (b's depth there agrees)."""
    a, b = views["a"], views["b"]
    pa, va = lift_depth(a["depth"].double(), a["intrinsics"].double(), a["extrinsics"].double(), frame)
    pb, vb = lift_depth(b["depth"].double(), b["intrinsics"].double(), b["extrinsics"].double(), frame)
    world_a, _ = lift_depth(a["depth"].double(), a["intrinsics"].double(), a["extrinsics"].double(), "base")
    cam_b = Camera(b["intrinsics"].double(), b["extrinsics"].double(), 96, 96)
    uv, z = cam_b.project(world_a.reshape(-1, 3))
    grid = (uv / 96 * 2 - 1)[None, None]  # pixel centres at +0.5: align_corners=False
    maps = torch.cat([pb.permute(2, 0, 1), vb[None].double(), b["depth"].double()[None]])[None]
    s = torch.nn.functional.grid_sample(maps, grid, mode="bilinear", align_corners=False)[0, :, 0].T
    pb_at, valid_at, zb = s[:, :3], s[:, 3], s[:, 4]
    both = va.reshape(-1) & cam_b.in_image(uv) & (z > 0) & (valid_at > 0.999) & ((zb - z).abs() < 0.01)
    return pa.reshape(-1, 3)[both], pb_at[both]


def test_calibration_invariance_base_frame_points_agree_across_cameras(two_views):
    """The same spot seen by two cameras gets the same base-frame coordinates (within 5 mm), so the
    spatial encoding is built from the same numbers; in the camera frame (SpatialVLA-style
    baseline) the coordinates of the same spot disagree."""
    pa, pb = _matches(two_views, "base")
    assert len(pa) > 500, "the two views should share many surface pixels"
    err = (pa - pb).norm(dim=-1)
    assert err.median() < 0.001 and err.quantile(0.95) < 0.005, f"median {err.median()}, 95% {err.quantile(0.95)}"
    ca, cb = _matches(two_views, "camera")
    cam_err = (ca - cb).norm(dim=-1)
    assert cam_err.median() > 0.2, "camera-frame coordinates of the same spot should differ between views"
    enc = SpatialEncoding(32)
    same = enc(pa.float(), torch.ones(len(pa), dtype=torch.bool)) - enc(
        pb.float(), torch.ones(len(pb), dtype=torch.bool)
    )
    diff = enc(ca.float(), torch.ones(len(ca), dtype=torch.bool)) - enc(
        cb.float(), torch.ones(len(cb), dtype=torch.bool)
    )
    assert same.norm(dim=-1).median() < 0.1 * diff.norm(dim=-1).median()


def test_lift_depth_rejects_unknown_frame():
    with pytest.raises(ValueError, match="frame: expected 'base' or 'camera'"):
        lift_depth(torch.ones(2, 2), torch.eye(3), torch.eye(4), "world2")


def test_pool_points_matches_numpy_on_odd_sizes():
    rng = np.random.default_rng(1)
    pts = torch.tensor(rng.normal(size=(1, 6, 6, 3)))
    valid = torch.ones(1, 6, 6, dtype=torch.bool)
    cell, _ = pool_points(pts, valid, 3)
    expected = pts[0].reshape(3, 2, 3, 2, 3).mean(axis=(1, 3)).reshape(9, 3)
    torch.testing.assert_close(cell[0], expected)


def test_keypoint_points_are_softmax_weighted_means_of_valid_cells():
    g = torch.Generator().manual_seed(1)
    pts = torch.randn(2, 8, 8, 3, generator=g)
    valid = torch.rand(2, 8, 8, generator=g) > 0.3
    valid[1] = False
    valid[1, 6:, 6:] = True  # sample 1: only the bottom-right cell of a 4x4 map has depth
    weights = torch.randn(2, 3, 4, 4, generator=g).flatten(2).softmax(-1).reshape(2, 3, 4, 4)
    weights[1, 1] = 0.0
    weights[1, 1, 3, 3], weights[1, 1, 0, 0] = 0.6, 0.4  # mostly on the one cell with depth
    weights[1, 2] = 0.0
    weights[1, 2, 3, 3], weights[1, 2, 0, 0] = 0.01, 0.99  # mostly on a cell without depth
    out, ok = keypoint_points(pts, valid, weights)
    assert out.shape == (2, 3, 3) and ok.shape == (2, 3)
    for n in range(2):
        for k in range(3):
            num, den = torch.zeros(3), 0.0
            for r in range(4):
                for c in range(4):
                    m = valid[n, 2 * r : 2 * r + 2, 2 * c : 2 * c + 2]
                    if m.any():
                        num += weights[n, k, r, c] * pts[n, 2 * r : 2 * r + 2, 2 * c : 2 * c + 2][m].mean(0)
                        den += float(weights[n, k, r, c])
            assert bool(ok[n, k]) == (den >= 0.5)
            if den > 1e-6:
                torch.testing.assert_close(out[n, k], num / den)
    assert ok[1, 1] and not ok[1, 2]  # 60% vs 1% of the weight on depth
    torch.testing.assert_close(out[1, 1], pts[1, 6:, 6:].reshape(-1, 3).mean(0))


def test_a_keypoint_on_the_cube_lands_on_the_cube_in_the_base_frame():
    """Weights peaked on the feature cell where MuJoCo's red cube projects give a base-frame point
    on that cube, from every camera (the cube is 4 cm; a feature cell here is 2 pixels)."""
    cams = tuple(CameraSpec(n, azimuth=a, elevation=e) for n, a, e in (("a", 20.0, 40.0), ("b", -99.0, 35.0)))
    env = gym.make("MVBench/CubeInBowl-v0", cameras=cams, width=96, height=96)
    obs, _ = env.reset(seed=5)
    cube = torch.as_tensor(env.unwrapped.position("red_cube"), dtype=torch.float64)
    env.close()
    h = 48
    for name in ("a", "b"):
        o = {k: torch.as_tensor(v).double() for k, v in obs["cameras"][name].items()}
        pts, valid = lift_depth(o["depth"], o["intrinsics"], o["extrinsics"], "base")
        uv, _ = Camera(o["intrinsics"], o["extrinsics"], 96, 96).project(cube[None])
        col, row = (uv[0] / 2).long().tolist()  # the 2-pixel feature cell holding the cube's centre
        w = torch.zeros(1, 1, h, h, dtype=torch.float64)
        w[0, 0, row, col] = 1.0
        p, ok = keypoint_points(pts[None], valid[None], w)
        assert ok.all() and (p[0, 0] - cube).norm() < 0.03, (name, p[0, 0], cube)
        w = torch.full((1, 1, h, h), 1.0 / h**2, dtype=torch.float64)  # spread over the image: elsewhere
        p, _ = keypoint_points(pts[None], valid[None], w)
        assert (p[0, 0] - cube).norm() > 0.05
