"""Readers for Blender nerf_synthetic folders and nerfstudio ``transforms.json`` files.

Blender (``transforms_{train,val,test}.json``)::

    {"camera_angle_x": 0.69, "frames": [{"file_path": "./train/r_0", "transform_matrix": [[...4x4...]]}]}

``file_path`` has no extension (``.png`` is added); images are RGBA and are composited on the
chosen background. The horizontal field of view gives fx = fy, and the principal point is the
image centre.

nerfstudio (``transforms.json``): intrinsics ``fl_x, fl_y, cx, cy, w, h`` and ``camera_model``
at the top level, any of which a frame may override; ``file_path`` is relative to the JSON's
folder; an optional ``depth_file_path`` names a uint16 PNG scaled by ``depth_unit_scale_factor``
(default 1e-3: millimetres). Splits come from ``{train,val,test}_filenames`` when the file has
them, otherwise every ``holdout_every``-th frame (0, 8, 16, ...) is held out as val/test.

Both store OpenGL camera-to-world matrices (x right, y up, looking down -z); they become OpenCV
world-to-camera extrinsics here, once.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from worldline import Camera, axes_focus

SPLITS = ("train", "val", "test", "all")
BACKGROUNDS = {"white": (1.0, 1.0, 1.0), "black": (0.0, 0.0, 0.0)}
BLENDER_SPHERE = 2.0  # radius (m) around the origin that holds a nerf_synthetic object: near/far ~ 2/6
PINHOLE_MODELS = ("OPENCV", "PINHOLE", "SIMPLE_PINHOLE")
DISTORTION = ("k1", "k2", "k3", "k4", "p1", "p2")


@dataclass
class SceneData:
    """A split of a posed-image dataset, in memory.

    images:  float32 [N, H, W, 3] in [0, 1], composited on ``background``
    cameras: :class:`worldline.Camera` with batch shape [N]
    near, far: ray bounds in metres (Euclidean distance along unit rays)
    depths:  float32 [N, H, W] planar metres (0 = invalid) or None
    paths:   the image file of each frame
    """

    images: Tensor
    cameras: Camera
    near: float
    far: float
    depths: Tensor | None
    paths: list[str]
    background: tuple[float, float, float]
    split: str
    format: str

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def height(self) -> int:
        return self.cameras.height

    @property
    def width(self) -> int:
        return self.cameras.width


class DatasetError(ValueError):
    """Bad dataset input; the message names the file and the field."""


_REQUIRED = object()


def _field(meta: dict, key: str, where: str, kind=float, default=_REQUIRED):
    """``meta[key]`` as ``kind`` (``default`` when absent), or a one-line error naming the field."""
    if key not in meta:
        if default is _REQUIRED:
            raise DatasetError(f"{where}: missing field '{key}'")
        return default
    value = meta[key]
    try:
        if kind is str:
            if not isinstance(value, str) or not value:
                raise TypeError
            return value
        if isinstance(value, bool):
            raise TypeError
        out = kind(value)
        if kind is float and not math.isfinite(out):
            raise ValueError
        return out
    except (TypeError, ValueError):
        name = "a path" if kind is str else f"{kind.__name__}"
        raise DatasetError(f"{where}: field '{key}' should be {name}, got {value!r}") from None


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    if not isinstance(meta, dict):
        raise DatasetError(f"{path}: expected a JSON object at the top level")
    frames = meta.get("frames")
    if not isinstance(frames, list) or not frames:
        raise DatasetError(f"{path}: field 'frames' is missing or empty")
    bad = [i for i, f in enumerate(frames) if not isinstance(f, dict)]
    if bad:
        raise DatasetError(f"{path}: frames[{bad[0]}]: expected an object with file_path and transform_matrix")
    return meta


def _matrix(frame: dict, where: str) -> np.ndarray:
    if "transform_matrix" not in frame:
        raise DatasetError(f"{where}: missing field 'transform_matrix'")
    try:
        m = np.asarray(frame["transform_matrix"], dtype=np.float64)
    except (TypeError, ValueError):
        raise DatasetError(f"{where}: field 'transform_matrix' is not a numeric 4x4 matrix") from None
    if m.shape == (3, 4):
        m = np.vstack([m, [0, 0, 0, 1]])
    if m.shape != (4, 4) or not np.isfinite(m).all():
        raise DatasetError(f"{where}: field 'transform_matrix' should be a finite 4x4 matrix, got shape {m.shape}")
    return m


def _load_rgb(path: Path, where: str, background: tuple[float, float, float]) -> np.ndarray:
    """float32 [H, W, 3] in [0, 1]; RGBA composited on ``background``."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise DatasetError(f"{where}: image {path} not found")
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode in ("RGBA", "LA", "PA", "P"):
                arr = np.asarray(im.convert("RGBA"), dtype=np.float32) / 255.0
            else:
                arr = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as exc:
        raise DatasetError(f"{where}: cannot read image {path} ({exc})") from None
    if arr.shape[-1] == 4:
        alpha = arr[..., 3:]
        arr = arr[..., :3] * alpha + np.asarray(background, np.float32) * (1.0 - alpha)
    return arr


def _load_depth(path: Path, where: str, scale: float) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise DatasetError(f"{where}: depth image {path} not found")
    try:
        with Image.open(path) as im:
            raw = np.asarray(im)
    except (UnidentifiedImageError, OSError) as exc:
        raise DatasetError(f"{where}: cannot read depth image {path} ({exc})") from None
    if raw.ndim != 2 or raw.dtype not in (np.uint16, np.int32, np.uint8):
        raise DatasetError(f"{where}: depth image {path} should be single-channel 16-bit, got {raw.dtype} {raw.shape}")
    return raw.astype(np.float32) * scale


def _resize(arr: np.ndarray, width: int, height: int, nearest: bool) -> np.ndarray:
    import cv2

    if arr.shape[1] == width and arr.shape[0] == height:
        return arr
    return cv2.resize(arr, (width, height), interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_AREA)


def scene_bounds(cameras: Camera, depths: Tensor | None = None, sphere: float | None = None) -> tuple[float, float]:
    """Ray bounds (near, far) in metres along unit rays.

    From depth maps when given (the distances of the valid depth points, widened by 10 %); else
    from a sphere of radius ``sphere`` around the origin (Blender scenes); else from the cameras:
    the point nearest to all optical axes is taken as the scene centre and the bounds span
    [0.05, 2] x the camera distances to it.
    """
    centres = cameras.center.reshape(-1, 3).double()
    if depths is not None and bool((depths > 0).any()):
        points = cameras.unproject(depths.to(cameras.K.dtype))  # [N, H, W, 3]
        dist = (points - cameras.center[..., None, None, :]).norm(dim=-1)
        valid = dist[depths > 0]
        return float(valid.min()) * 0.9, float(valid.max()) * 1.1
    if sphere is not None:
        r = centres.norm(dim=-1)
        return max(float(r.min()) - sphere, 0.05), float(r.max()) + sphere
    d = (centres - axes_focus(cameras).double()).norm(dim=-1)
    return 0.05 * float(d.min()), 2.0 * float(d.max())


def _finish(images, cameras, depths, paths, background, split, fmt, downscale, near, far, sphere) -> SceneData:
    if downscale != 1:
        w = max(1, round(cameras.width / downscale))
        h = max(1, round(cameras.height / downscale))
        images = [_resize(im, w, h, nearest=False) for im in images]
        if depths is not None:
            depths = [_resize(d, w, h, nearest=True) for d in depths]
        cameras = cameras.resize(w, h)
    imgs = torch.from_numpy(np.stack(images)).float()
    dep = None if depths is None else torch.from_numpy(np.stack(depths)).float()
    if near is None or far is None:
        auto = scene_bounds(cameras, dep, sphere)
        near = auto[0] if near is None else near
        far = auto[1] if far is None else far
    if not (0 <= near < far):
        raise DatasetError(f"near/far: expected 0 <= near < far, got near={near}, far={far}")
    return SceneData(imgs, cameras, float(near), float(far), dep, paths, background, split, fmt)


def _read_blender(root: Path, split: str, background, downscale, near, far) -> SceneData:
    splits = ("train", "val", "test") if split == "all" else (split,)
    images, c2ws, paths, fx_list = [], [], [], []
    size = None
    for s in splits:
        file = root / f"transforms_{s}.json"
        meta = _read_json(file)
        angle_x = _field(meta, "camera_angle_x", str(file))
        if not (0 < angle_x < math.pi):
            raise DatasetError(f"{file}: field 'camera_angle_x' should be radians in (0, pi), got {angle_x}")
        for i, frame in enumerate(meta["frames"]):
            where = f"{file}: frames[{i}]"
            p = root / _field(frame, "file_path", where, str)
            if p.suffix.lower() not in (".png", ".jpg", ".jpeg"):
                p = p.with_name(p.name + ".png")
            im = _load_rgb(p, where, background)
            if size is None:
                size = im.shape[:2]
            elif im.shape[:2] != size:
                raise DatasetError(f"{where}: image {p} is {im.shape[1]}x{im.shape[0]}, the others {size[1]}x{size[0]}")
            images.append(im)
            c2ws.append(_matrix(frame, where))
            paths.append(str(p))
            fx_list.append(0.5 * im.shape[1] / math.tan(0.5 * angle_x))
    h, w = size
    K = torch.zeros(len(images), 3, 3, dtype=torch.float64)
    K[:, 0, 0] = torch.tensor(fx_list, dtype=torch.float64)
    K[:, 1, 1] = K[:, 0, 0]
    K[:, 0, 2], K[:, 1, 2], K[:, 2, 2] = w / 2, h / 2, 1.0
    cams = Camera.from_opengl_c2w(torch.from_numpy(np.stack(c2ws)), w, h, K=K).to(torch.float32)
    return _finish(images, cams, None, paths, background, split, "blender", downscale, near, far, BLENDER_SPHERE)


def _split_indices(meta: dict, file: Path, split: str, holdout_every: int) -> list[int]:
    frames = meta["frames"]
    if split == "all":
        return list(range(len(frames)))
    key = f"{split}_filenames"
    if any(f"{s}_filenames" in meta for s in ("train", "val", "test")):
        names = meta.get(key)
        if names is None and split == "val":  # nerfstudio falls back to the test list for val
            names = meta.get("test_filenames")
        if not isinstance(names, list):
            raise DatasetError(f"{file}: missing field '{key}' (the file lists other splits)")
        wanted = {str(Path(n)) for n in names}
        if not all(isinstance(n, str) for n in names):
            raise DatasetError(f"{file}: field '{key}' should be a list of file paths")
        idx = [i for i, f in enumerate(frames) if str(Path(str(f.get("file_path", "")))) in wanted]
        if len(idx) != len(wanted):
            raise DatasetError(f"{file}: field '{key}' names {len(wanted) - len(idx)} file(s) not among the frames")
        return idx
    if holdout_every < 2:
        raise DatasetError(f"holdout_every: expected >= 2 for a file without splits, got {holdout_every}")
    held = [i for i in range(len(frames)) if i % holdout_every == 0]
    return [i for i in range(len(frames)) if i not in held] if split == "train" else held


def _read_nerfstudio(file: Path, split: str, background, downscale, near, far, holdout_every) -> SceneData:
    meta = _read_json(file)
    root = file.parent
    idx = _split_indices(meta, file, split, holdout_every)
    if not idx:
        raise DatasetError(f"{file}: split '{split}' has no frames")
    scale = _field(meta, "depth_unit_scale_factor", str(file), float, 1e-3)
    has_depth = any("depth_file_path" in meta["frames"][i] for i in idx)
    images, depths, c2ws, Ks, paths = [], [], [], [], []
    size = None
    for i in idx:
        frame = meta["frames"][i]
        where = f"{file}: frames[{i}]"
        merged = {**meta, **frame}
        model = str(merged.get("camera_model", "OPENCV"))
        if model not in PINHOLE_MODELS:
            raise DatasetError(
                f"{where}: field 'camera_model' {model!r} is not supported (pinhole only: {PINHOLE_MODELS})"
            )
        for k in DISTORTION:
            if _field(merged, k, where, float, 0.0) != 0.0:
                raise DatasetError(
                    f"{where}: field '{k}' = {merged[k]}: lens distortion is not supported; undistort first"
                )
        fx = _field(merged, "fl_x", where)
        fy = _field(merged, "fl_y", where, float, fx)
        w, h = _field(merged, "w", where, int), _field(merged, "h", where, int)
        cx, cy = _field(merged, "cx", where, float, w / 2), _field(merged, "cy", where, float, h / 2)
        if min(fx, fy, w, h) <= 0:
            raise DatasetError(f"{where}: fields 'fl_x', 'fl_y', 'w', 'h' must be positive, got {fx}, {fy}, {w}, {h}")
        p = root / _field(frame, "file_path", where, str)
        im = _load_rgb(p, where, background)
        if im.shape[:2] != (h, w):
            raise DatasetError(f"{where}: image {p} is {im.shape[1]}x{im.shape[0]}, fields 'w','h' say {w}x{h}")
        if size is None:
            size = (h, w)
        elif size != (h, w):
            raise DatasetError(f"{where}: image size {w}x{h} differs from the first frame's {size[1]}x{size[0]}")
        images.append(im)
        if has_depth:
            if "depth_file_path" in frame:
                d = _load_depth(root / _field(frame, "depth_file_path", where, str), where, scale)
                if d.shape != (h, w):
                    raise DatasetError(f"{where}: depth image is {d.shape[1]}x{d.shape[0]}, the image {w}x{h}")
            else:
                d = np.zeros((h, w), np.float32)
            depths.append(d)
        c2ws.append(_matrix(frame, where))
        Ks.append([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
        paths.append(str(p))
    h, w = size
    K = torch.tensor(Ks, dtype=torch.float64)
    cams = Camera.from_opengl_c2w(torch.from_numpy(np.stack(c2ws)), w, h, K=K).to(torch.float32)
    return _finish(images, cams, depths if has_depth else None, paths, background, split, "nerfstudio", downscale,
                   near, far, None)  # fmt: skip


def load_dataset(
    path: str | Path,
    split: str = "train",
    *,
    downscale: float = 1,
    background: str = "white",
    holdout_every: int = 8,
    near: float | None = None,
    far: float | None = None,
) -> SceneData:
    """Read one split of a Blender folder or a nerfstudio ``transforms.json`` (or its folder).

    ``downscale`` divides the image size (800 -> 100 px with 8; K follows through
    :meth:`worldline.Camera.resize`); ``background`` composites RGBA images; ``near``/``far``
    override the bounds :func:`scene_bounds` derives.
    """
    path = Path(path)
    if split not in SPLITS:
        raise DatasetError(f"split: expected one of {SPLITS}, got {split!r}")
    if background not in BACKGROUNDS:
        raise DatasetError(f"background: expected one of {sorted(BACKGROUNDS)}, got {background!r}")
    if not downscale >= 1:
        raise DatasetError(f"downscale: expected a factor >= 1, got {downscale}")
    bg = BACKGROUNDS[background]
    if path.is_file() and path.suffix == ".json":
        return _read_nerfstudio(path, split, bg, downscale, near, far, holdout_every)
    if not path.is_dir():
        raise DatasetError(f"{path}: no such dataset folder or transforms.json")
    if (path / "transforms.json").is_file():
        return _read_nerfstudio(path / "transforms.json", split, bg, downscale, near, far, holdout_every)
    if any((path / f"transforms_{s}.json").is_file() for s in ("train", "val", "test")):
        return _read_blender(path, split, bg, downscale, near, far)
    raise DatasetError(f"{path}: neither transforms.json (nerfstudio) nor transforms_{{train,val,test}}.json (Blender)")
