"""worldline: the shared camera/geometry core.

Everything here is geometry and small helpers every package needs (cameras, rigid transforms,
depth <-> points, atomic I/O, typed configs). It imports nothing else of the project.
"""

from worldline.camera import Camera, axes_focus, intrinsics_from_fov, pixel_centers, project_points, unproject_depth
from worldline.points import (
    PointCloud,
    crop_to_box,
    depth_to_points,
    fuse_rgbd,
    transform_points,
    voxel_downsample,
    voxel_indices,
)

__version__ = "0.1.0"

__all__ = [
    "Camera",
    "PointCloud",
    "axes_focus",
    "crop_to_box",
    "depth_to_points",
    "fuse_rgbd",
    "intrinsics_from_fov",
    "pixel_centers",
    "project_points",
    "transform_points",
    "unproject_depth",
    "voxel_downsample",
    "voxel_indices",
]
