"""Pinhole cameras: intrinsics, extrinsics, projection, unprojection and rays.

Conventions (DESIGN.md):
  * camera axes are OpenCV's: x right, y down, z forward;
  * ``w2c`` ``[..., 4, 4]`` maps world points (metres) into the camera frame;
  * ``K`` ``[..., 3, 3]`` maps camera points to continuous image coordinates in pixels, in which
    the pixel with integer index (u, v) covers [u, u+1) x [v, v+1) and has its centre at
    (u + 0.5, v + 0.5). A camera whose principal point is the image centre has cx = W / 2;
  * depth is planar z in metres (not the distance along the ray); 0 marks an invalid pixel.

The free functions (:func:`project_points`, :func:`unproject_depth`, :func:`pixel_centers`) are
the single implementation; :class:`Camera` is a batched container that calls them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from worldline._checks import as_tensor, broadcast_batch, check_finite, check_positive_int, check_trailing
from worldline.transforms import fov_to_focal, make_se3, opencv_to_opengl, opengl_to_opencv, se3_inverse

__all__ = ["Camera", "axes_focus", "intrinsics_from_fov", "pixel_centers", "project_points", "unproject_depth"]


def _check_K(K) -> Tensor:
    K = as_tensor("K", K)
    check_trailing("K", K, [3, 3])
    check_finite("K", K)
    if bool((K[..., 0, 0] == 0).any() or (K[..., 1, 1] == 0).any()):
        raise ValueError("K: focal lengths K[0,0] and K[1,1] must be non-zero")
    return K


def _check_w2c(w2c, like: Tensor) -> tuple[Tensor, Tensor]:
    """Validate w2c and promote it and ``like`` (K) to their common floating dtype."""
    w2c = as_tensor("w2c", w2c, device=like.device)
    check_trailing("w2c", w2c, [4, 4])
    check_finite("w2c", w2c)
    dtype = torch.promote_types(w2c.dtype, like.dtype)
    return like.to(dtype), w2c.to(dtype)


def intrinsics_from_fov(fovy: float, width: int, height: int, fovx: float | None = None) -> Tensor:
    """Intrinsics ``[3, 3]`` for a centred pinhole with vertical field of view ``fovy`` (radians).

    With ``fovx`` omitted pixels are square (fx = fy), as in MuJoCo and OpenGL.
    """
    check_positive_int("width", width)
    check_positive_int("height", height)
    if not (0 < fovy < math.pi):
        raise ValueError(f"fovy: expected radians in (0, pi), got {fovy!r}")
    fy = fov_to_focal(fovy, height)
    fx = fy if fovx is None else fov_to_focal(fovx, width)
    return torch.tensor([[fx, 0.0, width / 2], [0.0, fy, height / 2], [0.0, 0.0, 1.0]])


def pixel_centers(height: int, width: int, *, dtype=None, device=None) -> Tensor:
    """Continuous coordinates of pixel centres ``[H, W, 2]`` as (u + 0.5, v + 0.5)."""
    v, u = torch.meshgrid(
        torch.arange(height, dtype=dtype, device=device) + 0.5,
        torch.arange(width, dtype=dtype, device=device) + 0.5,
        indexing="ij",
    )
    return torch.stack([u, v], dim=-1)


def project_points(K: Tensor, w2c: Tensor, points_world: Tensor) -> tuple[Tensor, Tensor]:
    """Project world points into the image.

    Args:
        K: intrinsics ``[..., 3, 3]``.
        w2c: world-to-camera ``[..., 4, 4]`` (OpenCV axes).
        points_world: ``[..., N, 3]`` metres in the world frame.

    Returns:
        ``uv`` ``[..., N, 2]`` continuous pixel coordinates (centre of pixel (i, j) at (i+0.5, j+0.5))
        and ``depth`` ``[..., N]`` planar camera z in metres. Points behind the camera get negative
        depth; their uv is still computed (and meaningless) so the caller decides what to keep.
    """
    K, w2c = _check_w2c(w2c, _check_K(K))
    p = as_tensor("points_world", points_world, dtype=K.dtype, device=K.device)
    check_trailing("points_world", p, [None, 3])
    broadcast_batch(K=K.shape[:-2], w2c=w2c.shape[:-2], points_world=p.shape[:-2])
    p_cam = p @ w2c[..., :3, :3].transpose(-1, -2) + w2c[..., None, :3, 3]
    z = p_cam[..., 2]
    # avoid inf/NaN (and NaN gradients) for points exactly on the camera plane
    z_safe = torch.where(z.abs() < 1e-12, torch.full_like(z, 1e-12), z)
    xy = p_cam[..., :2] / z_safe[..., None]
    fx, fy = K[..., 0, 0, None], K[..., 1, 1, None]
    cx, cy, s = K[..., 0, 2, None], K[..., 1, 2, None], K[..., 0, 1, None]
    u = fx * xy[..., 0] + s * xy[..., 1] + cx
    v = fy * xy[..., 1] + cy
    return torch.stack([u, v], dim=-1), z


def unproject_depth(K: Tensor, w2c: Tensor | None, depth: Tensor) -> Tensor:
    """Lift a planar depth map to 3D points at every pixel centre.

    Args:
        K: intrinsics ``[..., 3, 3]``.
        w2c: world-to-camera ``[..., 4, 4]``; ``None`` returns points in the camera frame.
        depth: ``[..., H, W]`` planar z in metres (0 = invalid; such pixels map to the camera centre).

    Returns:
        points ``[..., H, W, 3]`` in metres, in the world frame (or camera frame if ``w2c`` is None).
    """
    K = _check_K(K)
    d = as_tensor("depth", depth, dtype=K.dtype, device=K.device)
    if d.ndim < 2:
        raise ValueError(f"depth: expected shape [..., H, W], got {list(d.shape)}")
    check_finite("depth", d)
    h, w = d.shape[-2:]
    batch = [("K", K.shape[:-2]), ("depth", d.shape[:-2])]
    if w2c is not None:
        K, w2c = _check_w2c(w2c, K)
        batch.append(("w2c", w2c.shape[:-2]))
    broadcast_batch(**dict(batch))
    uv = pixel_centers(h, w, dtype=K.dtype, device=K.device)  # [H, W, 2]
    fx, fy = K[..., 0, 0, None, None], K[..., 1, 1, None, None]
    cx, cy, s = K[..., 0, 2, None, None], K[..., 1, 2, None, None], K[..., 0, 1, None, None]
    y = (uv[..., 1] - cy) / fy
    x = (uv[..., 0] - cx - s * y) / fx
    x, y = torch.broadcast_tensors(x, y)
    pts = torch.stack([x * d, y * d, d.expand_as(x)], dim=-1)
    if w2c is None:
        return pts
    c2w = se3_inverse(w2c)
    r = c2w[..., None, None, :3, :3]
    t = c2w[..., None, None, :3, 3]
    return (r @ pts[..., None])[..., 0] + t


def axes_focus(cameras: Camera) -> Tensor:
    """The point ``[3]`` nearest (least squares) to the optical axes of all ``cameras`` (any batch
    shape): where a ring or sphere of cameras looks. Raises ValueError when the axes are (nearly)
    parallel, since no such point is defined then."""
    c2w = cameras.c2w.reshape(-1, 4, 4).double()
    centres, axes = c2w[:, :3, 3], c2w[:, :3, 2]  # OpenCV: +z is the viewing direction
    proj = torch.eye(3, dtype=torch.float64, device=c2w.device) - axes[:, :, None] * axes[:, None, :]
    a, b = proj.sum(0), (proj @ centres[:, :, None]).sum(0)
    eig = torch.linalg.eigvalsh(a)
    if float(eig[0]) < 1e-6 * max(float(eig[-1]), 1e-12):
        raise ValueError("cameras: the optical axes are parallel; they have no common focus point")
    return torch.linalg.solve(a, b)[:, 0].to(cameras.w2c.dtype)


@dataclass(frozen=True)
class Camera:
    """A batch of pinhole cameras sharing one image size.

    Attributes:
        K: intrinsics ``[..., 3, 3]`` in pixels (centre of pixel (u, v) at (u+0.5, v+0.5)).
        w2c: world-to-camera extrinsics ``[..., 4, 4]``, OpenCV axes, metres.
        width: image width in pixels.
        height: image height in pixels.

    Examples:
        >>> cam = Camera.from_fov(math.radians(60), 64, 48, w2c=torch.eye(4))
        >>> uv, z = cam.project(torch.tensor([[0.0, 0.0, 2.0]]))
        >>> uv.tolist(), z.tolist()
        ([[32.0, 24.0]], [2.0])
    """

    K: Tensor
    w2c: Tensor
    width: int
    height: int

    def __post_init__(self):
        K, w2c = _check_w2c(self.w2c, _check_K(self.K))
        broadcast_batch(K=K.shape[:-2], w2c=w2c.shape[:-2])
        check_positive_int("width", self.width)
        check_positive_int("height", self.height)
        object.__setattr__(self, "K", K)
        object.__setattr__(self, "w2c", w2c)

    # -- constructors -------------------------------------------------------------------------

    @classmethod
    def from_fov(cls, fovy: float, width: int, height: int, w2c: Tensor | None = None) -> Camera:
        """Centred square-pixel camera with vertical field of view ``fovy`` (radians)."""
        w2c = torch.eye(4) if w2c is None else as_tensor("w2c", w2c)
        K = intrinsics_from_fov(fovy, width, height).to(w2c)
        return cls(K=K, w2c=w2c, width=width, height=height)

    @classmethod
    def from_mujoco(cls, pos, xmat, fovy_deg: float, width: int, height: int) -> Camera:
        """From a MuJoCo camera: ``data.cam_xpos`` ``[..., 3]``, ``data.cam_xmat`` ``[..., 9]`` or
        ``[..., 3, 3]`` (columns are the camera axes in world, OpenGL convention) and
        ``model.cam_fovy`` in degrees (vertical). The result is in OpenCV axes.
        """
        pos = as_tensor("pos", pos, dtype=torch.get_default_dtype())
        xmat = as_tensor("xmat", xmat, dtype=pos.dtype)
        if xmat.shape[-1:] == (9,):
            xmat = xmat.reshape(xmat.shape[:-1] + (3, 3))
        check_trailing("xmat", xmat, [3, 3])
        check_trailing("pos", pos, [3])
        c2w_gl = make_se3(xmat, pos)
        cam = cls.from_opengl_c2w(c2w_gl, width, height, fovy=math.radians(float(fovy_deg)))
        return cam

    @classmethod
    def from_opengl_c2w(
        cls, c2w, width: int, height: int, *, fovy: float | None = None, K: Tensor | None = None
    ) -> Camera:
        """From an OpenGL/Blender camera-to-world ``[..., 4, 4]`` (as in transforms.json).

        Give either ``fovy`` (radians, square pixels) or a full ``K``.
        """
        if (fovy is None) == (K is None):
            raise ValueError("from_opengl_c2w: pass exactly one of fovy or K")
        c2w = as_tensor("c2w", c2w)
        check_trailing("c2w", c2w, [4, 4])
        K = intrinsics_from_fov(fovy, width, height).to(c2w) if K is None else K
        return cls(K=K, w2c=se3_inverse(opengl_to_opencv(c2w)), width=width, height=height)

    def to_opengl_c2w(self) -> Tensor:
        """Camera-to-world ``[..., 4, 4]`` in OpenGL/Blender axes (for transforms.json)."""
        return opencv_to_opengl(self.c2w)

    # -- properties ---------------------------------------------------------------------------

    @property
    def c2w(self) -> Tensor:
        """Camera-to-world ``[..., 4, 4]`` (OpenCV axes)."""
        return se3_inverse(self.w2c)

    @property
    def center(self) -> Tensor:
        """Camera centre in world metres ``[..., 3]``."""
        return self.c2w[..., :3, 3]

    @property
    def batch_shape(self) -> torch.Size:
        return torch.broadcast_shapes(self.K.shape[:-2], self.w2c.shape[:-2])

    def to(self, *args, **kwargs) -> Camera:
        return Camera(self.K.to(*args, **kwargs), self.w2c.to(*args, **kwargs), self.width, self.height)

    def __getitem__(self, idx) -> Camera:
        shape = self.batch_shape
        K = self.K.expand(shape + (3, 3))[idx]
        w2c = self.w2c.expand(shape + (4, 4))[idx]
        return Camera(K, w2c, self.width, self.height)

    # -- geometry -----------------------------------------------------------------------------

    def project(self, points_world: Tensor) -> tuple[Tensor, Tensor]:
        """World points ``[..., N, 3]`` -> (uv ``[..., N, 2]`` pixels, depth ``[..., N]`` metres).

        See :func:`project_points`.
        """
        return project_points(self.K, self.w2c, points_world)

    def unproject(self, depth: Tensor) -> Tensor:
        """Planar depth ``[..., H, W]`` (metres) -> world points ``[..., H, W, 3]``."""
        self._check_image_shape("depth", depth)
        return unproject_depth(self.K, self.w2c, depth)

    def in_image(self, uv: Tensor) -> Tensor:
        """Boolean mask ``[...]`` of continuous coordinates ``uv`` ``[..., 2]`` inside the image."""
        return (uv[..., 0] >= 0) & (uv[..., 0] < self.width) & (uv[..., 1] >= 0) & (uv[..., 1] < self.height)

    def rays(self, normalize: bool = True) -> tuple[Tensor, Tensor]:
        """Rays through every pixel centre, in the world frame.

        Returns:
            origins ``[..., H, W, 3]`` (the camera centre) and directions ``[..., H, W, 3]``.
            With ``normalize=False`` directions have camera-z component 1, so a ray parameter t
            equals planar depth; with ``normalize=True`` they are unit vectors and t is the
            Euclidean distance.
        """
        ones = torch.ones((self.height, self.width), dtype=self.K.dtype, device=self.K.device)
        p_cam = unproject_depth(self.K, None, ones)  # [..., H, W, 3] with z = 1
        c2w = self.c2w
        r = c2w[..., None, None, :3, :3]
        dirs = (r @ p_cam[..., None])[..., 0]
        if normalize:
            dirs = dirs / dirs.norm(dim=-1, keepdim=True)
        origins = c2w[..., None, None, :3, 3].expand_as(dirs)
        return origins, dirs

    def resize(self, width: int, height: int) -> Camera:
        """Same camera imaging the same field of view at another resolution (K scaled per axis)."""
        check_positive_int("width", width)
        check_positive_int("height", height)
        sx, sy = width / self.width, height / self.height
        scale = torch.tensor([sx, sy, 1.0], dtype=self.K.dtype, device=self.K.device)
        return Camera(self.K * scale[:, None], self.w2c, width, height)

    def crop(self, left: int, top: int, width: int, height: int) -> Camera:
        """Camera seeing the sub-image starting at pixel (left, top) of size width x height."""
        check_positive_int("width", width)
        check_positive_int("height", height)
        if left < 0 or top < 0 or left + width > self.width or top + height > self.height:
            raise ValueError(
                f"crop: box (left={left}, top={top}, width={width}, height={height}) "
                f"is outside the {self.width}x{self.height} image"
            )
        K = self.K.clone()
        K[..., 0, 2] -= left
        K[..., 1, 2] -= top
        return Camera(K, self.w2c, width, height)

    def _check_image_shape(self, name: str, image: Tensor) -> None:
        shape = tuple(image.shape)
        if len(shape) < 2 or shape[-2:] != (self.height, self.width):
            raise ValueError(f"{name}: expected [..., {self.height}, {self.width}] for this camera, got {list(shape)}")
