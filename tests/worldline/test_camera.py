import math

import cv2
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from worldline import transforms as T
from worldline.camera import Camera, pixel_centers, project_points, unproject_depth


def _random_camera(seed: int, batch=(), dtype=torch.float64) -> Camera:
    g = torch.Generator().manual_seed(seed)
    w, h = 20 + int(torch.randint(0, 40, (1,), generator=g)), 16 + int(torch.randint(0, 40, (1,), generator=g))
    fx = 10 + 90 * torch.rand(batch, generator=g, dtype=dtype)
    fy = 10 + 90 * torch.rand(batch, generator=g, dtype=dtype)
    K = torch.zeros(batch + (3, 3), dtype=dtype)
    K[..., 0, 0], K[..., 1, 1], K[..., 2, 2] = fx, fy, 1
    K[..., 0, 2] = w * torch.rand(batch, generator=g, dtype=dtype)
    K[..., 1, 2] = h * torch.rand(batch, generator=g, dtype=dtype)
    aa = torch.randn(batch + (3,), generator=g, dtype=dtype) * 2
    t = torch.randn(batch + (3,), generator=g, dtype=dtype)
    w2c = T.make_se3(T.axis_angle_to_matrix(aa), t)
    return Camera(K, w2c, w, h)


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from([(), (2,), (2, 3)]))
def test_project_unproject_roundtrip(seed, batch):
    cam = _random_camera(seed, batch)
    g = torch.Generator().manual_seed(seed + 1)
    depth = 0.1 + 10 * torch.rand(batch + (cam.height, cam.width), generator=g, dtype=torch.float64)
    pts = cam.unproject(depth)  # [..., H, W, 3]
    uv, z = cam.project(pts.flatten(-3, -2))
    grid = pixel_centers(cam.height, cam.width, dtype=torch.float64).reshape(-1, 2)
    torch.testing.assert_close(uv, grid.expand_as(uv), atol=1e-5, rtol=0)
    torch.testing.assert_close(z, depth.flatten(-2), atol=1e-5, rtol=0)


def test_projection_matches_opencv():
    cam = _random_camera(7)
    pts_cam = torch.randn(200, 3, dtype=torch.float64)
    pts_cam[:, 2] = pts_cam[:, 2].abs() + 0.5
    pts_world = (pts_cam - cam.w2c[:3, 3]) @ cam.w2c[:3, :3]  # R^T (p - t)
    uv, z = cam.project(pts_world)
    rvec, _ = cv2.Rodrigues(cam.w2c[:3, :3].numpy())
    ref, _ = cv2.projectPoints(pts_world.numpy(), rvec, cam.w2c[:3, 3].numpy(), cam.K.numpy(), None)
    np.testing.assert_allclose(uv.numpy(), ref[:, 0], atol=1e-8)
    np.testing.assert_allclose(z.numpy(), pts_cam[:, 2].numpy(), atol=1e-10)


def test_from_fov_centres_principal_point():
    cam = Camera.from_fov(math.radians(90), 64, 32)
    uv, z = cam.project(torch.tensor([[0.0, 0.0, 3.0], [1.0, 0.0, 1.0]]))
    torch.testing.assert_close(uv[0], torch.tensor([32.0, 16.0]))
    # fovy=90 deg over 32 px -> f = 16 px; x/z = 1 -> u = 32 + 16
    torch.testing.assert_close(uv[1], torch.tensor([48.0, 16.0]))


def test_resize_and_crop_keep_geometry():
    cam = _random_camera(11)
    p = cam.unproject(torch.full((cam.height, cam.width), 3.0, dtype=torch.float64))[5, 7][None]
    uv, _ = cam.project(p)
    big = cam.resize(cam.width * 2, cam.height * 3)
    uv2, _ = big.project(p)
    torch.testing.assert_close(uv2, uv * torch.tensor([2.0, 3.0], dtype=torch.float64))
    crop = cam.crop(3, 2, cam.width - 5, cam.height - 4)
    uv3, _ = crop.project(p)
    torch.testing.assert_close(uv3, uv - torch.tensor([3.0, 2.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="crop"):
        cam.crop(1, 1, cam.width, cam.height)


def test_mujoco_and_opengl_constructors_roundtrip():
    import mujoco

    xml = """<mujoco><worldbody>
      <camera name="c" pos="0.6 -0.4 0.9" xyaxes="0.6 0.8 0 -0.3 0.2 0.9" fovy="50"/>
    </worldbody></mujoco>"""
    model = mujoco.MjModel.from_xml_string(xml)
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    cam = Camera.from_mujoco(data.cam_xpos[0], data.cam_xmat[0], model.cam_fovy[0], 64, 48)
    # MuJoCo cameras look down their -z axis: the point 1 m in front projects to the centre
    fwd = -data.cam_xmat[0].reshape(3, 3)[:, 2]
    uv, z = cam.project(torch.tensor(data.cam_xpos[0] + fwd)[None].float())
    torch.testing.assert_close(uv[0], torch.tensor([32.0, 24.0]), atol=1e-4, rtol=0)
    assert abs(z.item() - 1.0) < 1e-5
    # MuJoCo's camera +y is image up, i.e. OpenCV -y
    up = data.cam_xmat[0].reshape(3, 3)[:, 1]
    uv_up, _ = cam.project(torch.tensor(data.cam_xpos[0] + fwd + 0.1 * up)[None].float())
    assert uv_up[0, 1] < 24.0
    gl = cam.to_opengl_c2w()
    back = Camera.from_opengl_c2w(gl, 64, 48, K=cam.K)
    torch.testing.assert_close(back.w2c, cam.w2c)


def test_gradcheck_project_and_unproject():
    cam = _random_camera(5)
    K = cam.K.clone().requires_grad_()
    w2c = cam.w2c.clone().requires_grad_()
    pts = cam.unproject(torch.full((cam.height, cam.width), 2.0, dtype=torch.float64))[:2, :3].reshape(-1, 3)
    pts = pts.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda k, e, p: project_points(k, e, p), (K, w2c, pts))
    depth = (1 + torch.rand(4, 5, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(lambda k, e, d: unproject_depth(k, e, d), (K, w2c, depth))


def test_bad_input_names_argument():
    with pytest.raises(ValueError, match=r"K: expected shape \[\.\.\., 3, 3\], got \[4, 4\]"):
        Camera(torch.eye(4), torch.eye(4), 8, 8)
    with pytest.raises(ValueError, match=r"batch shapes do not broadcast: K batch \[2\], w2c batch \[3\]"):
        Camera(torch.eye(3).repeat(2, 1, 1), torch.eye(4).repeat(3, 1, 1), 8, 8)
    K = torch.eye(3)
    K[0, 2] = float("nan")
    with pytest.raises(ValueError, match="K: contains 1 non-finite"):
        Camera(K, torch.eye(4), 8, 8)
    cam = Camera.from_fov(1.0, 8, 6)
    with pytest.raises(ValueError, match="depth: .*non-finite"):
        cam.unproject(torch.full((6, 8), float("inf")))
    with pytest.raises(ValueError, match=r"depth: expected \[\.\.\., 6, 8\]"):
        cam.unproject(torch.ones(8, 6))
    with pytest.raises(ValueError, match=r"points_world: expected shape \[\.\.\., \*, 3\]"):
        cam.project(torch.ones(5, 2))
    with pytest.raises(ValueError, match="width: expected a positive int"):
        Camera.from_fov(1.0, 0, 6)
    with pytest.raises(ValueError, match="fovy"):
        Camera.from_fov(4.0, 8, 6)


def test_cuda_matches_cpu():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA")
    cam = _random_camera(9, (3,))
    depth = torch.rand(3, cam.height, cam.width, dtype=torch.float64) + 0.5
    torch.testing.assert_close(cam.to("cuda").unproject(depth.cuda()).cpu(), cam.unproject(depth))


def test_axes_focus_ring_and_two_lines():
    from worldline import axes_focus
    from worldline.transforms import look_at

    target = torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64)
    up = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    eyes = torch.tensor([[2.0, 0, 1], [0, 2.0, 0.5], [-2.0, 0.3, 1.5], [0.1, -2.0, 0.8]], dtype=torch.float64)
    ring = Camera.from_fov(1.0, 8, 8, w2c=torch.stack([look_at(e, target, up) for e in eyes]))
    torch.testing.assert_close(axes_focus(ring), target)
    # two skew lines: the least-squares point is the midpoint of their common perpendicular
    e1, e2 = torch.tensor([1.0, 0, 0], dtype=torch.float64), torch.tensor([0, 1.0, 0.5], dtype=torch.float64)
    t1, t2 = torch.tensor([0.0, 0.5, 0.3], dtype=torch.float64), torch.tensor([0.2, -0.4, 0.0], dtype=torch.float64)
    cams = Camera.from_fov(1.0, 8, 8, w2c=torch.stack([look_at(e1, t1, up), look_at(e2, t2, up)]))
    d1, d2 = (t1 - e1) / (t1 - e1).norm(), (t2 - e2) / (t2 - e2).norm()
    w0 = e1 - e2
    a, b, c, d, e = d1 @ d1, d1 @ d2, d2 @ d2, d1 @ w0, d2 @ w0
    s = (b * e - c * d) / (a * c - b * b)
    t = (a * e - b * d) / (a * c - b * b)
    torch.testing.assert_close(axes_focus(cams), 0.5 * ((e1 + s * d1) + (e2 + t * d2)))
    down = torch.tensor([0.1, 0.1, -0.9], dtype=torch.float64)
    parallel = Camera.from_fov(1.0, 8, 8, w2c=torch.stack([look_at(e1, e1 + down, up), look_at(e2, e2 + down, up)]))
    with pytest.raises(ValueError, match="parallel"):
        axes_focus(parallel)
