import numpy as np
import pytest
import torch

from worldline import transforms as T
from worldline.camera import Camera
from worldline.points import (
    PointCloud,
    crop_to_box,
    depth_to_points,
    from_open3d,
    fuse_rgbd,
    resample_points,
    to_open3d,
    transform_points,
    voxel_downsample,
)


def test_depth_to_points_matches_open3d():
    o3d = pytest.importorskip("open3d")
    w, h = 40, 30
    K = torch.tensor([[35.0, 0, 19.3], [0, 33.0, 14.1], [0, 0, 1]], dtype=torch.float64)
    w2c = T.look_at(torch.tensor([0.5, -1.0, 0.8]), torch.tensor([0.0, 0.0, 0.1])).double()
    rng = np.random.default_rng(0)
    depth_mm = rng.integers(300, 3000, size=(h, w)).astype(np.uint16)
    depth_mm[rng.random((h, w)) < 0.1] = 0
    depth = torch.from_numpy(depth_mm.astype(np.float64) / 1000.0)
    pts, valid = depth_to_points(depth, K, w2c, frame="world")
    # open3d addresses pixel centres at integer (u, v); ours at (u + 0.5, v + 0.5)
    intr = o3d.camera.PinholeCameraIntrinsic(
        w, h, K[0, 0].item(), K[1, 1].item(), K[0, 2].item() - 0.5, K[1, 2].item() - 0.5
    )
    pcd = o3d.geometry.PointCloud.create_from_depth_image(
        o3d.geometry.Image(depth_mm),
        intr,
        extrinsic=w2c.numpy(),
        depth_scale=1000.0,
        depth_trunc=100.0,
        project_valid_depth_only=True,
    )
    ref = np.asarray(pcd.points)
    ours = pts[valid].numpy()  # row-major over valid pixels, the order open3d uses
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=1e-6)
    cam_pts, _ = depth_to_points(depth, K, frame="camera")
    torch.testing.assert_close(transform_points(T.se3_inverse(w2c), cam_pts.reshape(-1, 3)), pts.reshape(-1, 3))


def test_fuse_rejects_mismatched_views():
    cam = Camera.from_fov(1.0, 8, 6)
    with pytest.raises(ValueError, match="depths: expected 2 views"):
        fuse_rgbd([cam, cam], torch.ones(1, 6, 8))
    with pytest.raises(ValueError, match=r"depths\[0\]: expected \[\.\.\., 6, 8\]"):
        fuse_rgbd([cam], torch.ones(1, 5, 8))


def test_voxel_downsample_matches_open3d_and_averages():
    pytest.importorskip("open3d")
    g = torch.Generator().manual_seed(0)
    xyz = torch.rand(2000, 3, generator=g, dtype=torch.float64)
    rgb = torch.rand(2000, 3, generator=g, dtype=torch.float64)
    ours = voxel_downsample(PointCloud(xyz, rgb), 0.1, origin=xyz.min(0).values - 0.05)
    ref = to_open3d(PointCloud(xyz, rgb)).voxel_down_sample(0.1)
    ref_xyz = np.asarray(ref.points)
    assert len(ours) == len(ref_xyz)
    order_a = np.lexsort(ours.xyz.numpy().T)
    order_b = np.lexsort(ref_xyz.T)
    np.testing.assert_allclose(ours.xyz.numpy()[order_a], ref_xyz[order_b], atol=1e-9)
    np.testing.assert_allclose(ours.rgb.numpy()[order_a], np.asarray(ref.colors)[order_b], atol=1e-9)
    # the default world-aligned grid: every output is the mean of its voxel's inputs
    world = voxel_downsample(PointCloud(xyz), 0.25)
    keys = torch.floor(xyz / 0.25)
    for p in world.xyz[:20]:
        members = (keys == torch.floor(p / 0.25)).all(-1)
        torch.testing.assert_close(p, xyz[members].mean(0))


def test_crop_resample_and_open3d_roundtrip():
    xyz = torch.tensor([[0.0, 0, 0], [0.5, 0.5, 0.5], [2.0, 0, 0]])
    rgb = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1]])
    c = crop_to_box(PointCloud(xyz, rgb), [0, 0, 0], [1, 1, 1])
    torch.testing.assert_close(c.xyz, xyz[:2])
    torch.testing.assert_close(c.rgb, rgb[:2])
    with pytest.raises(ValueError, match="lower"):
        crop_to_box(PointCloud(xyz), [1, 1, 1], [0, 0, 0])
    r = resample_points(PointCloud(xyz, rgb), 7, torch.Generator().manual_seed(0))
    assert r.xyz.shape == (7, 3)
    assert set(map(tuple, r.xyz.tolist())) == set(map(tuple, xyz.tolist()))  # all kept, repeats added
    r2 = resample_points(PointCloud(xyz, rgb), 2, torch.Generator().manual_seed(0))
    assert len({tuple(p) for p in r2.xyz.tolist()}) == 2
    pytest.importorskip("open3d")
    back = from_open3d(to_open3d(PointCloud(xyz, rgb)))
    torch.testing.assert_close(back.xyz, xyz)
    torch.testing.assert_close(back.rgb, rgb)


def test_voxel_indices_match_open3d_voxel_grid():
    o3d = pytest.importorskip("open3d")
    from worldline import voxel_indices

    rng = np.random.default_rng(0)
    origin = np.array([0.1, -0.2, 0.05])
    pts = rng.uniform(-0.5, 1.0, (200, 3))
    grid = o3d.geometry.VoxelGrid.create_dense(origin=origin, color=np.zeros(3), voxel_size=0.07, width=1.0,
                                               height=1.0, depth=1.0)  # fmt: skip
    want = np.stack([grid.get_voxel(p) for p in pts])  # open3d: floor((p - origin) / voxel_size)
    got = voxel_indices(torch.from_numpy(pts), 0.07, origin)
    assert got.dtype == torch.int64 and got.shape == (200, 3)
    np.testing.assert_array_equal(got.numpy(), want)


def test_voxel_indices_closed_form_and_errors():
    from worldline import voxel_indices

    # any leading shape; the default origin is the world origin
    assert voxel_indices(torch.tensor([[[-0.01, 0.0, 0.29]]]), 0.1).tolist() == [[[-1, 0, 2]]]
    with pytest.raises(ValueError, match="voxel_size: expected > 0"):
        voxel_indices(torch.zeros(1, 3), 0.0)
    with pytest.raises(ValueError, match=r"points: expected shape \[\.\.\., 3\]"):
        voxel_indices(torch.zeros(4, 2), 0.1)
    with pytest.raises(ValueError, match="non-finite"):
        voxel_indices(torch.tensor([[float("nan"), 0, 0]]), 0.1)
