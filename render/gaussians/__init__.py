"""3D Gaussian splatting: the model, a differentiable rasterizer with a pure-PyTorch reference and a
gsplat backend, adaptive density control, training, and the standard 3DGS PLY format."""

from render.gaussians.model import GaussianModel
from render.gaussians.ply import load_ply, save_ply, to_open3d
from render.gaussians.rasterize import rasterize

__all__ = ["GaussianModel", "load_ply", "rasterize", "save_ply", "to_open3d"]
