import numpy as np
import pytest
from render_scenes import render_plane, ring_cameras


@pytest.fixture
def plane_scene(tmp_path):
    """A nerfstudio dataset (transforms.json) of the analytic textured plane: 6 views, 16 px, depth."""
    from render.datasets import write_nerfstudio

    cams = ring_cameras(6, 16)
    images = np.stack([(render_plane(cams[i]).numpy() * 255).round().astype(np.uint8) for i in range(6)])
    o, d = cams.rays(normalize=False)
    depth = (-o[..., 2] / d[..., 2]).numpy()  # planar depth of the plane
    return write_nerfstudio(tmp_path / "plane", images, cams, depth, split={"train": [1, 2, 3, 4, 5], "test": [0]})
