"""Lifting depth against closed-form scenes computed here with numpy, independent of worldline.

Each test builds its own pinhole rays (pixel (u, v) has its centre at (u + 0.5, v + 0.5); OpenCV
camera axes x right, y down, z forward; ``w2c`` 4x4 built by :func:`_look_at_w2c` below),
intersects them analytically with a plane and a sphere, converts each hit to planar depth (camera
z, not the distance along the ray) and checks that worldline lifts that depth back onto the
surface, at the analytic hit point. Pixels whose ray misses get depth 0 and must come back invalid.

These replace round trips that rendered depth with ``Camera.rays()`` and lifted it with the same
``unproject_depth`` that ``rays()`` calls, which stay self-consistent under a shared bug (pixel
centres at integers, fx/fy swapped, depth read as distance along the ray).
"""

import numpy as np
import pytest
import torch

from worldline.camera import Camera
from worldline.points import depth_to_points, fuse_rgbd

MAX_RANGE = 20.0  # metres; farther plane hits (near the horizon) count as misses, like a sensor's range
TOL = 1e-9

# --- the numpy oracle --------------------------------------------------------------------------


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _look_at_w2c(eye, target, roll: float = 0.0, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """World-to-camera 4x4 for a camera at ``eye`` looking at ``target`` (OpenCV axes), rolled
    by ``roll`` radians about its optical axis."""
    eye, target, up = (np.asarray(a, dtype=np.float64) for a in (eye, target, up))
    forward = _unit(target - eye)
    right = _unit(np.cross(forward, up))
    down = np.cross(forward, right)
    c, s = np.cos(roll), np.sin(roll)
    roll_z = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    rot = roll_z @ np.stack([right, down, forward])  # rows: camera axes in world coordinates
    w2c = np.eye(4)
    w2c[:3, :3] = rot
    w2c[:3, 3] = -rot @ eye
    return w2c


def _intrinsics(fx, fy, cx, cy) -> np.ndarray:
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def _pixel_rays(K: np.ndarray, w2c: np.ndarray, height: int, width: int):
    """Camera centre [3], unit world directions [H, W, 3] and camera-z-1 world directions [H, W, 3]."""
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    u, v = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)  # [H, W], u along columns
    d_cam = np.stack([(u - cx) / fx, (v - cy) / fy, np.ones_like(u)], axis=-1)
    rot, t = w2c[:3, :3], w2c[:3, 3]
    origin = -rot.T @ t
    d_world = d_cam @ rot  # row-vector form of rot.T @ d
    return origin, _unit(d_world), d_world


def _hit_plane(origin, dirs, normal, offset):
    """Ray parameter t of the hit with the plane n.p = offset (nan where there is none)."""
    denom = dirs @ normal
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (offset - origin @ normal) / denom
    return np.where((np.abs(denom) > 1e-12) & (t > 0), t, np.nan)


def _hit_sphere(origin, dirs, center, radius):
    """Nearest positive t with |o + t d - c| = r for unit d (nan where the ray misses)."""
    oc = origin - center
    b = dirs @ oc
    disc = b**2 - (oc @ oc - radius**2)
    with np.errstate(invalid="ignore"):
        t = -b - np.sqrt(disc)
    return np.where((disc > 0) & (t > 0), t, np.nan)


def _render(K, w2c, height, width, t):
    """Hit points [H, W, 3] (nan on misses), planar depth [H, W] (0 on misses), hit mask [H, W]."""
    origin, dirs, _ = _pixel_rays(K, w2c, height, width)
    hit = np.isfinite(t) & (t < MAX_RANGE)
    points = origin + np.where(hit, t, np.nan)[..., None] * dirs
    z = (points @ w2c[:3, :3].T + w2c[:3, 3])[..., 2]  # camera-frame z of the hit, not t
    return points, np.where(hit, z, 0.0), hit


PLANE_NORMAL = _unit(np.array([0.1, -0.2, 1.0]))
PLANE_OFFSET = 0.05
SPHERE_CENTER = np.array([0.1, 0.2, 0.4])
SPHERE_RADIUS = 0.35


def _plane_residual(p):
    return np.abs(p @ PLANE_NORMAL - PLANE_OFFSET)


def _sphere_residual(p):
    return np.abs(np.linalg.norm(p - SPHERE_CENTER, axis=-1) - SPHERE_RADIUS)


def _trace(surface: str, K, w2c, height, width):
    origin, dirs, _ = _pixel_rays(K, w2c, height, width)
    t_plane = _hit_plane(origin, dirs, PLANE_NORMAL, PLANE_OFFSET)
    t_sphere = _hit_sphere(origin, dirs, SPHERE_CENTER, SPHERE_RADIUS)
    t = {"plane": t_plane, "sphere": t_sphere, "both": np.fmin(t_plane, t_sphere)}[surface]
    return _render(K, w2c, height, width, t)


# Non-square pixels, off-centre principal points, W != H and rolled cameras, so swapped axes or
# focal lengths cannot cancel out. Both views see the sphere and the sky above the plane.
CAMERAS = {
    "wide": (_intrinsics(38.0, 35.0, 21.3, 13.7), _look_at_w2c([1.2, -1.6, 1.1], [0.1, 0.2, 0.8], roll=0.3), 30, 40),
    "tall": (_intrinsics(60.0, 52.0, 15.1, 25.9), _look_at_w2c([-1.0, -0.9, 0.6], [0.1, 0.2, 0.4], roll=-0.7), 47, 33),
}


def test_oracle_follows_opencv_conventions():
    """The numpy oracle itself, checked by hand, so the tests below compare against the right thing."""
    # at (0, -2, 0) looking at the origin (along +y) with z up: camera x = world +x, y (down) = -z
    w2c = _look_at_w2c([0.0, -2.0, 0.0], [0.0, 0.0, 0.0])
    expected = np.array([[1.0, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 2], [0, 0, 0, 1]])
    np.testing.assert_allclose(w2c, expected, atol=1e-15)
    for K, w2c, h, w in CAMERAS.values():
        rot, t = w2c[:3, :3], w2c[:3, 3]
        np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-12)
        assert np.isclose(np.linalg.det(rot), 1.0)
        origin, unit_dirs, raw_dirs = _pixel_rays(K, w2c, h, w)
        np.testing.assert_allclose(rot @ origin + t, 0.0, atol=1e-12)
        # every ray re-projects, by the pinhole formula u = fx x / z + cx, to its pixel centre
        x, y, z = np.moveaxis((origin + 2.0 * unit_dirs) @ rot.T + t, -1, 0)
        v_idx, u_idx = np.indices((h, w))
        np.testing.assert_allclose(K[0, 0] * x / z + K[0, 2], u_idx + 0.5, atol=1e-9)
        np.testing.assert_allclose(K[1, 1] * y / z + K[1, 2], v_idx + 0.5, atol=1e-9)
        np.testing.assert_allclose(raw_dirs @ rot[2], 1.0, atol=1e-12)  # camera z of the raw rays


@pytest.mark.parametrize("batched", [False, True])
def test_rays_match_numpy_pinhole_rays(batched):
    names = list(CAMERAS) if batched else ["wide"]
    h, w = CAMERAS[names[0]][2:]
    Ks = np.stack([CAMERAS[n][0] for n in names])
    w2cs = np.stack([CAMERAS[n][1] for n in names])
    cam = Camera(torch.from_numpy(Ks), torch.from_numpy(w2cs), w, h)
    origins, unit_dirs = cam.rays()
    _, raw_dirs = cam.rays(normalize=False)
    for i in range(len(names)):
        origin, ref_unit, ref_raw = _pixel_rays(Ks[i], w2cs[i], h, w)
        np.testing.assert_allclose(unit_dirs[i].numpy(), ref_unit, atol=1e-12, rtol=0)
        np.testing.assert_allclose(raw_dirs[i].numpy(), ref_raw, atol=1e-12, rtol=0)  # camera z = 1
        np.testing.assert_allclose(origins[i].numpy(), np.broadcast_to(origin, (h, w, 3)), atol=1e-12, rtol=0)


@pytest.mark.parametrize("camera", list(CAMERAS))
@pytest.mark.parametrize("surface", ["plane", "sphere"])
def test_lifted_depth_lands_on_analytic_surface(surface, camera):
    K, w2c, h, w = CAMERAS[camera]
    ref_points, depth_np, hit = _trace(surface, K, w2c, h, w)
    assert 0 < hit.sum() < hit.size, "the scene must have both hits and misses"
    depth, K_t, w2c_t = (torch.from_numpy(a) for a in (depth_np, K, w2c))

    pts, valid = depth_to_points(depth, K_t, w2c_t, frame="world")
    np.testing.assert_array_equal(valid.numpy(), hit)
    lifted = pts.numpy()[hit]
    residual = _plane_residual(lifted) if surface == "plane" else _sphere_residual(lifted)
    assert residual.max() < TOL
    np.testing.assert_allclose(lifted, ref_points[hit], atol=TOL, rtol=0)

    # the Camera method agrees, and maps depth-0 pixels to the camera centre as documented
    cam_pts = Camera(K_t, w2c_t, w, h).unproject(depth).numpy()
    np.testing.assert_allclose(cam_pts[hit], ref_points[hit], atol=TOL, rtol=0)
    np.testing.assert_allclose(cam_pts[~hit], np.broadcast_to(-w2c[:3, :3].T @ w2c[:3, 3], cam_pts[~hit].shape))

    # camera-frame lifting gives the hit points expressed in camera axes
    pts_cam, valid_cam = depth_to_points(depth, K_t, frame="camera")
    np.testing.assert_array_equal(valid_cam.numpy(), hit)
    ref_cam = ref_points[hit] @ w2c[:3, :3].T + w2c[:3, 3]
    np.testing.assert_allclose(pts_cam.numpy()[hit], ref_cam, atol=TOL, rtol=0)


def _orbit_cameras(n_views: int = 4, width: int = 32, height: int = 24):
    K = _intrinsics(30.0, 28.0, 15.2, 12.9)
    views = []
    for i in range(n_views):
        a = i * 2 * np.pi / n_views + 0.3
        eye = [1.3 * np.cos(a), 1.3 * np.sin(a), 0.9]
        views.append((K, _look_at_w2c(eye, SPHERE_CENTER, roll=0.1 * i), height, width))
    return views


def test_fused_views_recover_analytic_scene():
    """Four views of a sphere above a tilted plane: the fused cloud is exactly the
    analytic nearest hits of every pixel that has one, in view-then-row-major order."""
    views = _orbit_cameras()
    traced = [_trace("both", *v) for v in views]
    ref = np.concatenate([p[hit] for p, _, hit in traced])
    depths = torch.from_numpy(np.stack([d for _, d, _ in traced]))
    assert 0 < (depths > 0).sum() < depths.numel()
    h, w = views[0][2:]
    batched = Camera(
        torch.from_numpy(np.stack([v[0] for v in views])), torch.from_numpy(np.stack([v[1] for v in views])), w, h
    )
    rgbs = torch.randint(0, 256, (len(views), h, w, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))

    cloud = fuse_rgbd(batched, depths, rgbs)
    xyz = cloud.xyz.numpy()
    assert xyz.shape == ref.shape
    np.testing.assert_allclose(xyz, ref, atol=TOL, rtol=0)
    assert np.minimum(_plane_residual(xyz), _sphere_residual(xyz)).max() < TOL
    on_sphere = _sphere_residual(xyz) < TOL
    assert 0 < on_sphere.sum() < len(xyz), "the views must see both surfaces"
    hit_masks = np.stack([hit for _, _, hit in traced])
    np.testing.assert_allclose(cloud.rgb.numpy(), rgbs.numpy()[hit_masks] / 255.0, atol=1e-6, rtol=0)

    # one Camera per view gives the same cloud as the batched camera
    singles = [Camera(torch.from_numpy(K), torch.from_numpy(w2c), w, h) for K, w2c, _, _ in views]
    torch.testing.assert_close(fuse_rgbd(singles, list(depths), list(rgbs)).xyz, cloud.xyz)

    # max_depth drops exactly the hits whose planar depth exceeds it
    far = 1.5
    near = fuse_rgbd(batched, depths, max_depth=far).xyz.numpy()
    keep = np.concatenate([(d[hit] <= far) for _, d, hit in traced])
    assert 0 < keep.sum() < len(keep)
    np.testing.assert_allclose(near, ref[keep], atol=TOL, rtol=0)
