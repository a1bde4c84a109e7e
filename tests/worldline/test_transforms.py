import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from worldline import transforms as T


@pytest.fixture(autouse=True)
def _float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def _scipy_quat_wxyz(rot: Rotation) -> np.ndarray:
    xyzw = rot.as_quat()
    return np.concatenate([xyzw[..., 3:], xyzw[..., :3]], axis=-1)


def _canon(q):
    q = np.asarray(q)
    return np.where(q[..., :1] < 0, -q, q)


def _rotations_with_hard_angles(n=400, seed=0):
    rng = np.random.default_rng(seed)
    axes = rng.normal(size=(n, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    angles = np.concatenate(
        [
            rng.uniform(0, math.pi, n // 4),
            10.0 ** rng.uniform(-12, -3, n // 4),  # near 0
            math.pi - 10.0 ** rng.uniform(-12, -3, n // 4),  # near pi
            np.full(n - 3 * (n // 4), math.pi),  # exactly pi
        ]
    )
    return axes * angles[:, None]


def test_quat_matrix_agree_with_scipy():
    rv = _rotations_with_hard_angles()
    rot = Rotation.from_rotvec(rv)
    q = torch.tensor(_scipy_quat_wxyz(rot))
    np.testing.assert_allclose(T.quat_to_matrix(q).numpy(), rot.as_matrix(), atol=1e-12)
    q_back = T.matrix_to_quat(torch.tensor(rot.as_matrix())).numpy()
    # q and -q are the same rotation; compare canonical forms, except at exactly w=0 where both exist
    dots = np.abs((q_back * _canon(q.numpy())).sum(-1))
    np.testing.assert_allclose(dots, 1.0, atol=1e-12)


def test_axis_angle_agrees_with_scipy_including_0_and_pi():
    rv = _rotations_with_hard_angles()
    rot = Rotation.from_rotvec(rv)
    mats = T.axis_angle_to_matrix(torch.tensor(rv))
    np.testing.assert_allclose(mats.numpy(), rot.as_matrix(), atol=1e-12)
    back = T.matrix_to_axis_angle(torch.tensor(rot.as_matrix())).numpy()
    # compare as rotations: at angle pi, v and -v are the same rotation
    np.testing.assert_allclose(Rotation.from_rotvec(back).as_matrix(), rot.as_matrix(), atol=1e-10)
    angles = np.linalg.norm(rv, axis=1)
    np.testing.assert_allclose(np.linalg.norm(back, axis=1), angles, atol=1e-10)
    # away from pi the vector itself round-trips
    ok = angles < math.pi - 1e-3
    np.testing.assert_allclose(back[ok], rv[ok], atol=1e-10, rtol=1e-9)


def test_tiny_angles_keep_relative_precision():
    v = torch.tensor([[1e-10, -2e-10, 3e-10]])
    back = T.matrix_to_axis_angle(T.axis_angle_to_matrix(v))
    torch.testing.assert_close(back, v, rtol=1e-6, atol=0)
    q = T.axis_angle_to_quat(v)
    torch.testing.assert_close(T.quat_to_axis_angle(q), v, rtol=1e-9, atol=0)


def test_near_pi_is_accurate_where_acos_fails():
    # naive acos((trace-1)/2) gives an error ~sqrt(eps) ~ 1e-8 near pi; ours stays ~1e-12
    eps = 1e-9
    v = torch.tensor([[0.0, 0.0, math.pi - eps]])
    back = T.matrix_to_axis_angle(T.axis_angle_to_matrix(v))
    assert abs(back.norm().item() - (math.pi - eps)) < 1e-12


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-4, 4), min_size=4, max_size=4).filter(lambda q: sum(x * x for x in q) > 1e-3))
def test_quat_roundtrip(q):
    q = torch.tensor(q)
    q = q / q.norm()
    back = T.matrix_to_quat(T.quat_to_matrix(q))
    assert abs(abs(float((back * q).sum())) - 1.0) < 1e-10


def test_quat_multiply_matches_matrix_product():
    rot = Rotation.random(20, random_state=1)
    rot2 = Rotation.random(20, random_state=2)
    q = T.quat_multiply(torch.tensor(_scipy_quat_wxyz(rot)), torch.tensor(_scipy_quat_wxyz(rot2)))
    np.testing.assert_allclose(T.quat_to_matrix(q).numpy(), (rot * rot2).as_matrix(), atol=1e-12)


def test_se3_inverse_and_compose():
    rot = Rotation.random(5, random_state=3)
    t = torch.randn(5, 3)
    a = T.make_se3(torch.tensor(rot.as_matrix()), t)
    eye = T.se3_compose(a, T.se3_inverse(a))
    torch.testing.assert_close(eye, torch.eye(4).expand(5, 4, 4), atol=1e-12, rtol=0)
    torch.testing.assert_close(T.se3_inverse(a), torch.linalg.inv(a), atol=1e-12, rtol=0)


def test_look_at_points_camera_at_target():
    eye = torch.tensor([1.0, -2.0, 1.5])
    target = torch.tensor([0.1, 0.2, 0.3])
    w2c = T.look_at(eye, target)
    p = w2c @ torch.cat([target, torch.ones(1)])
    assert abs(p[0]) < 1e-12 and abs(p[1]) < 1e-12 and p[2] > 0
    torch.testing.assert_close((w2c @ torch.cat([eye, torch.ones(1)]))[:3], torch.zeros(3), atol=1e-12, rtol=0)
    # world up (+z) appears up in the image: a point above the target has smaller v (negative y)
    above = w2c @ torch.tensor([0.1, 0.2, 0.8, 1.0])
    assert above[1] < 0
    r = w2c[:3, :3]
    torch.testing.assert_close(r @ r.T, torch.eye(3), atol=1e-12, rtol=0)
    assert torch.linalg.det(r) > 0


def test_look_at_rejects_degenerate():
    with pytest.raises(ValueError, match="parallel"):
        T.look_at(torch.tensor([0.0, 0, 1]), torch.tensor([0.0, 0, 0]))
    with pytest.raises(ValueError, match="coincide"):
        T.look_at(torch.zeros(3), torch.zeros(3))


def test_opengl_flip_is_involution_and_flips_axes():
    c2w = T.make_se3(torch.tensor(Rotation.random(random_state=4).as_matrix()), torch.randn(3))
    gl = T.opencv_to_opengl(c2w)
    torch.testing.assert_close(T.opengl_to_opencv(gl), c2w)
    torch.testing.assert_close(gl[:3, 1], -c2w[:3, 1])
    torch.testing.assert_close(gl[:3, 2], -c2w[:3, 2])
    torch.testing.assert_close(gl[:3, 3], c2w[:3, 3])


def test_bad_shapes_name_argument():
    with pytest.raises(ValueError, match=r"quat: expected shape \[\.\.\., 4\], got \[3\]"):
        T.quat_to_matrix(torch.zeros(3))
    with pytest.raises(ValueError, match="matrix"):
        T.matrix_to_quat(torch.zeros(4, 4))
    with pytest.raises(ValueError, match="batch shapes do not broadcast"):
        T.quat_multiply(torch.ones(2, 4), torch.ones(3, 4))


def test_gradients_finite_at_identity():
    v = torch.zeros(3, requires_grad=True)
    T.axis_angle_to_matrix(v).sum().backward()
    assert torch.isfinite(v.grad).all()
    assert torch.autograd.gradcheck(T.axis_angle_to_matrix, (torch.tensor([1e-6, 2e-6, -1e-6], requires_grad=True),))
    assert torch.autograd.gradcheck(T.axis_angle_to_matrix, (torch.tensor([0.3, -1.2, 0.5], requires_grad=True),))
