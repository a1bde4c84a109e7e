"""Writing posed images as a nerfstudio dataset (``transforms.json`` + PNGs + uint16 mm depth)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from worldline import Camera


def write_nerfstudio(
    path: str | Path,
    images: np.ndarray,
    cameras: Camera,
    depths: np.ndarray | None = None,
    split: dict[str, list[int]] | None = None,
    extra: dict | None = None,
) -> Path:
    """Write ``images`` uint8 ``[N, H, W, 3]`` seen by ``cameras`` (batch [N]) to the folder ``path``.

    Depth (``[N, H, W]`` planar metres, 0 = invalid) goes to ``depth/`` as uint16 millimetres
    (``depth_unit_scale_factor`` 0.001). ``split`` maps "train"/"val"/"test" to frame indices
    (written as nerfstudio's ``*_filenames``). The folder is written next to its final place and
    renamed into it, so a reader never sees half a dataset. An existing dataset at ``path`` (a
    folder with a transforms.json) is replaced; any other non-empty folder is refused. Returns
    ``path/transforms.json``."""
    path = Path(path)
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images: expected uint8 [N, H, W, 3], got {images.dtype} {list(images.shape)}")
    n, h, w = images.shape[:3]
    if tuple(cameras.batch_shape) != (n,) or (cameras.height, cameras.width) != (h, w):
        raise ValueError(f"cameras: expected batch [{n}] of {w}x{h}, got {list(cameras.batch_shape)} of "
                         f"{cameras.width}x{cameras.height}")  # fmt: skip
    if depths is not None and np.asarray(depths).shape != (n, h, w):
        raise ValueError(f"depths: expected [{n}, {h}, {w}], got {list(np.asarray(depths).shape)}")
    if path.exists() and not (path / "transforms.json").is_file() and (not path.is_dir() or any(path.iterdir())):
        raise FileExistsError(f"{path}: exists and is not a nerfstudio dataset (no transforms.json); "
                              "refusing to replace it")  # fmt: skip
    from PIL import Image

    tmp = path.with_name(f".{path.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "images").mkdir(parents=True)
    if depths is not None:
        (tmp / "depth").mkdir()
    c2w = cameras.to_opengl_c2w().double().numpy()
    K = cameras.K.expand(n, 3, 3).double().numpy()
    frames = []
    for i in range(n):
        name = f"images/frame_{i:05d}.png"
        Image.fromarray(images[i]).save(tmp / name)
        frame = {"file_path": name, "transform_matrix": c2w[i].tolist(), "fl_x": float(K[i, 0, 0]),
                 "fl_y": float(K[i, 1, 1]), "cx": float(K[i, 0, 2]), "cy": float(K[i, 1, 2])}  # fmt: skip
        if depths is not None:
            mm = np.clip(np.round(np.asarray(depths[i], np.float64) * 1000.0), 0, 65535).astype(np.uint16)
            dname = f"depth/frame_{i:05d}.png"
            Image.fromarray(mm).save(tmp / dname)
            frame["depth_file_path"] = dname
        frames.append(frame)
    meta = {"camera_model": "OPENCV", "w": w, "h": h, "fl_x": frames[0]["fl_x"], "fl_y": frames[0]["fl_y"],
            "cx": frames[0]["cx"], "cy": frames[0]["cy"], "k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0}  # fmt: skip
    if depths is not None:
        meta["depth_unit_scale_factor"] = 0.001
    for s, idx in (split or {}).items():
        bad = [i for i in idx if not 0 <= i < n]
        if bad:
            raise ValueError(f"split[{s!r}]: frame indices {bad[:5]} are outside 0..{n - 1}")
        meta[f"{s}_filenames"] = [frames[i]["file_path"] for i in idx]
    meta.update(extra or {})
    meta["frames"] = frames
    (tmp / "transforms.json").write_text(json.dumps(meta, indent=2))
    if path.exists():  # replace an earlier dataset: old aside, new in, old removed
        old = path.with_name(f".{path.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        path.rename(old)
        tmp.rename(path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(path)
    return path / "transforms.json"


__all__ = ["write_nerfstudio"]
