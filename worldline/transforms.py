"""Rotations, rigid transforms and camera axis conventions.

Conventions (DESIGN.md): quaternions are (w, x, y, z) with unit norm; axis-angle vectors are
rotation axis times angle in radians; SE(3) transforms are homogeneous 4x4 matrices acting on
column vectors, ``T_a_b`` maps points from frame b into frame a. Every function accepts any
leading batch shape and runs on CPU and CUDA.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from worldline._checks import as_tensor, broadcast_batch, check_finite, check_trailing

__all__ = [
    "OPENCV_TO_OPENGL",
    "axis_angle_to_matrix",
    "axis_angle_to_quat",
    "look_at",
    "make_se3",
    "matrix_to_axis_angle",
    "matrix_to_quat",
    "opencv_to_opengl",
    "opengl_to_opencv",
    "quat_multiply",
    "quat_to_axis_angle",
    "quat_to_matrix",
    "se3_compose",
    "se3_inverse",
]

#: diag(1, -1, -1): flips camera axes between OpenCV (x right, y down, z forward) and
#: OpenGL/MuJoCo/Blender (x right, y up, looking down -z). It is its own inverse.
OPENCV_TO_OPENGL = torch.diag(torch.tensor([1.0, -1.0, -1.0]))


# ---------------------------------------------------------------------------------------------
# quaternions
# ---------------------------------------------------------------------------------------------


def quat_to_matrix(quat: Tensor) -> Tensor:
    """Unit quaternion (w, x, y, z) ``[..., 4]`` -> rotation matrix ``[..., 3, 3]``.

    The quaternion is normalised first, so any non-zero quaternion is accepted.
    """
    q = as_tensor("quat", quat)
    check_trailing("quat", q, [4])
    norm = q.norm(dim=-1, keepdim=True)
    if bool((norm == 0).any()):
        raise ValueError("quat: zero-norm quaternion cannot be converted to a rotation")
    w, x, y, z = (q / norm).unbind(-1)
    r = torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    )  # fmt: skip
    return r.reshape(q.shape[:-1] + (3, 3))


def matrix_to_quat(matrix: Tensor) -> Tensor:
    """Rotation matrix ``[..., 3, 3]`` -> unit quaternion (w, x, y, z) ``[..., 4]`` with w >= 0.

    Uses Shepperd's method: of the four algebraically equivalent formulas the one with the largest
    denominator is chosen per element, so the result is accurate for every rotation angle,
    including angles near pi where the trace formula loses all precision.
    """
    m = as_tensor("matrix", matrix)
    check_trailing("matrix", m, [3, 3])
    m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    # 4*q_i^2 for each component: candidates for the most stable pivot.
    four_sq = torch.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], dim=-1)
    # Each row below is 4 * q_pivot * q, i.e. q scaled by 4*q_pivot.
    cands = torch.stack(
        [
            torch.stack([four_sq[..., 0], m21 - m12, m02 - m20, m10 - m01], dim=-1),
            torch.stack([m21 - m12, four_sq[..., 1], m10 + m01, m02 + m20], dim=-1),
            torch.stack([m02 - m20, m10 + m01, four_sq[..., 2], m12 + m21], dim=-1),
            torch.stack([m10 - m01, m20 + m02, m21 + m12, four_sq[..., 3]], dim=-1),
        ],
        dim=-2,
    )  # [..., 4, 4]
    best = four_sq.argmax(dim=-1)  # [...]
    idx = best[..., None, None].expand(best.shape + (1, 4))
    q = torch.gather(cands, -2, idx).squeeze(-2)
    q = q / q.norm(dim=-1, keepdim=True)
    return torch.where(q[..., :1] < 0, -q, q)


def quat_multiply(a: Tensor, b: Tensor) -> Tensor:
    """Hamilton product ``a * b`` of (w, x, y, z) quaternions ``[..., 4]`` (rotate by b, then a)."""
    a = as_tensor("a", a)
    b = as_tensor("b", b)
    check_trailing("a", a, [4])
    check_trailing("b", b, [4])
    broadcast_batch(a=a.shape[:-1], b=b.shape[:-1])
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        dim=-1,
    )


def quat_to_axis_angle(quat: Tensor) -> Tensor:
    """Quaternion (w, x, y, z) ``[..., 4]`` -> axis-angle ``[..., 3]`` with angle in [0, pi].

    The angle is computed with atan2 (not acos), which keeps full precision near 0 and pi.
    """
    q = as_tensor("quat", quat)
    check_trailing("quat", q, [4])
    q = q / q.norm(dim=-1, keepdim=True)
    q = torch.where(q[..., :1] < 0, -q, q)
    w, xyz = q[..., :1], q[..., 1:]
    n2 = (xyz * xyz).sum(dim=-1, keepdim=True)
    small = n2 < 1e-12
    # sqrt is not differentiable at 0: only take it where the Taylor branch is not used
    n_safe = torch.where(small, torch.ones_like(n2), n2).sqrt()
    # angle / n -> 2 / w as n -> 0 (Taylor: 2/w * (1 - n^2 / (3 w^2)))
    scale = torch.where(small, 2 / w * (1 - n2 / (3 * w * w)), 2 * torch.atan2(n_safe, w) / n_safe)
    return xyz * scale


def axis_angle_to_quat(axis_angle: Tensor) -> Tensor:
    """Axis-angle ``[..., 3]`` (radians) -> unit quaternion (w, x, y, z) ``[..., 4]``."""
    v = as_tensor("axis_angle", axis_angle)
    check_trailing("axis_angle", v, [3])
    a2 = (v * v).sum(dim=-1, keepdim=True)
    small = a2 < 1e-12
    a_safe = torch.where(small, torch.ones_like(a2), a2).sqrt()
    # sin(a/2)/a -> 1/2 - a^2/48 and cos(a/2) -> 1 - a^2/8 as a -> 0
    k = torch.where(small, 0.5 - a2 / 48, torch.sin(a_safe / 2) / a_safe)
    w = torch.where(small, 1 - a2 / 8, torch.cos(a_safe / 2))
    return torch.cat([w, v * k], dim=-1)


def axis_angle_to_matrix(axis_angle: Tensor) -> Tensor:
    """Axis-angle ``[..., 3]`` (radians) -> rotation matrix ``[..., 3, 3]`` (Rodrigues).

    Uses Taylor expansions of sin(a)/a and (1-cos a)/a^2 near a = 0, so it is exact and
    differentiable at the identity.
    """
    v = as_tensor("axis_angle", axis_angle)
    check_trailing("axis_angle", v, [3])
    a2 = (v * v).sum(-1)[..., None, None]
    small = a2 < 1e-8
    a_safe = torch.where(small, torch.ones_like(a2), a2).sqrt()
    s = torch.where(small, 1 - a2 / 6, torch.sin(a_safe) / a_safe)
    c = torch.where(small, 0.5 - a2 / 24, (1 - torch.cos(a_safe)) / (a_safe * a_safe))
    x, y, z = v.unbind(-1)
    zero = torch.zeros_like(x)
    skew = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).reshape(v.shape[:-1] + (3, 3))
    eye = torch.eye(3, dtype=v.dtype, device=v.device).expand_as(skew)
    return eye + s * skew + c * (skew @ skew)


def matrix_to_axis_angle(matrix: Tensor) -> Tensor:
    """Rotation matrix ``[..., 3, 3]`` -> axis-angle ``[..., 3]``, angle in [0, pi].

    Goes through :func:`matrix_to_quat` (Shepperd) and :func:`quat_to_axis_angle` (atan2), which
    together stay accurate near angle 0 and near pi, where the naive acos((tr - 1) / 2) fails.
    """
    return quat_to_axis_angle(matrix_to_quat(matrix))


# ---------------------------------------------------------------------------------------------
# SE(3)
# ---------------------------------------------------------------------------------------------


def make_se3(rotation: Tensor, translation: Tensor) -> Tensor:
    """Build ``[..., 4, 4]`` from rotation ``[..., 3, 3]`` and translation ``[..., 3]``."""
    r = as_tensor("rotation", rotation)
    t = as_tensor("translation", translation, dtype=r.dtype, device=r.device)
    check_trailing("rotation", r, [3, 3])
    check_trailing("translation", t, [3])
    batch = broadcast_batch(rotation=r.shape[:-2], translation=t.shape[:-1])
    out = torch.zeros(batch + (4, 4), dtype=r.dtype, device=r.device)
    out[..., :3, :3] = r
    out[..., :3, 3] = t
    out[..., 3, 3] = 1
    return out


def se3_compose(a: Tensor, b: Tensor) -> Tensor:
    """``a @ b`` for ``[..., 4, 4]`` transforms: apply b first, then a (T_x_z = T_x_y @ T_y_z)."""
    a = as_tensor("a", a)
    b = as_tensor("b", b, dtype=a.dtype, device=a.device)
    check_trailing("a", a, [4, 4])
    check_trailing("b", b, [4, 4])
    broadcast_batch(a=a.shape[:-2], b=b.shape[:-2])
    return a @ b


def se3_inverse(transform: Tensor) -> Tensor:
    """Inverse of a rigid transform ``[..., 4, 4]``: [R^T, -R^T t] (no general matrix inverse)."""
    t = as_tensor("transform", transform)
    check_trailing("transform", t, [4, 4])
    r = t[..., :3, :3]
    p = t[..., :3, 3:]
    rt = r.transpose(-1, -2)
    top = torch.cat([rt, -rt @ p], dim=-1)
    bottom = torch.zeros_like(t[..., 3:, :])
    bottom[..., 3] = 1
    return torch.cat([top, bottom], dim=-2)


def look_at(eye: Tensor, target: Tensor, up: Tensor | None = None) -> Tensor:
    """World-to-camera ``[..., 4, 4]`` in OpenCV axes for a camera at ``eye`` looking at ``target``.

    Args:
        eye: camera centre in world metres ``[..., 3]``.
        target: point the optical axis (+z) passes through ``[..., 3]``.
        up: world direction that should appear up in the image (-y in OpenCV axes) ``[..., 3]``;
            default world +z.

    Raises:
        ValueError: if eye == target or the viewing direction is parallel to ``up``.
    """
    eye = as_tensor("eye", eye)
    target = as_tensor("target", target, dtype=eye.dtype, device=eye.device)
    check_trailing("eye", eye, [3])
    check_trailing("target", target, [3])
    if up is None:
        up = torch.tensor([0.0, 0.0, 1.0], dtype=eye.dtype, device=eye.device)
    up = as_tensor("up", up, dtype=eye.dtype, device=eye.device)
    check_trailing("up", up, [3])
    batch = broadcast_batch(eye=eye.shape[:-1], target=target.shape[:-1], up=up.shape[:-1])
    eye, target, up = (x.expand(batch + (3,)) for x in (eye, target, up))
    for name, x in (("eye", eye), ("target", target), ("up", up)):
        check_finite(name, x)
    fwd = target - eye
    fwd_n = fwd.norm(dim=-1, keepdim=True)
    if bool((fwd_n < 1e-12).any()):
        raise ValueError("look_at: eye and target coincide")
    z = fwd / fwd_n
    x = torch.linalg.cross(z, up)  # camera +x = forward x up  (right-handed, y down)
    x_n = x.norm(dim=-1, keepdim=True)
    if bool((x_n < 1e-9 * up.norm(dim=-1, keepdim=True).clamp_min(1e-30)).any()):
        raise ValueError("look_at: viewing direction is parallel to up; pass a different up vector")
    x = x / x_n
    y = torch.linalg.cross(z, x)
    r_w2c = torch.stack([x, y, z], dim=-2)  # rows are camera axes in world coordinates
    t = -(r_w2c @ eye[..., None])[..., 0]
    return make_se3(r_w2c, t)


def _flip(matrix: Tensor, name: str) -> Tensor:
    m = as_tensor(name, matrix)
    check_trailing(name, m, [4, 4])
    flip = torch.ones(4, dtype=m.dtype, device=m.device)
    flip[1:3] = -1
    return m * flip  # right-multiplying by diag(1,-1,-1,1) scales columns 1 and 2


def opencv_to_opengl(c2w: Tensor) -> Tensor:
    """Camera-to-world ``[..., 4, 4]`` in OpenCV axes -> the same camera in OpenGL axes."""
    return _flip(c2w, "c2w")


def opengl_to_opencv(c2w: Tensor) -> Tensor:
    """Camera-to-world ``[..., 4, 4]`` in OpenGL/Blender/MuJoCo axes -> OpenCV axes."""
    return _flip(c2w, "c2w")


def fov_to_focal(fov: float | Tensor, size: float | Tensor) -> Tensor | float:
    """Focal length in pixels for a field of view ``fov`` (radians) across ``size`` pixels."""
    if isinstance(fov, Tensor):
        return size / (2 * torch.tan(fov / 2))
    return size / (2 * math.tan(fov / 2))
