"""Posed-image datasets for NeRF and Gaussians: Blender nerf_synthetic and nerfstudio readers, a
nerfstudio writer (with uint16-millimetre depth).

    from render.datasets import load_dataset
    train = load_dataset("data/lego", "train", downscale=8)          # Blender: transforms_train.json
    test = load_dataset("data/scene/transforms.json", "test")        # nerfstudio: transforms.json

Cameras are :class:`worldline.Camera` (OpenCV axes, world-to-camera); the OpenGL camera-to-world
matrices of the files are converted once, here, with :meth:`worldline.Camera.from_opengl_c2w`.
"""

from render.datasets.readers import SceneData, load_dataset, scene_bounds
from render.datasets.writer import write_nerfstudio

__all__ = ["SceneData", "load_dataset", "scene_bounds", "write_nerfstudio"]
