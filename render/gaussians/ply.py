"""3DGS PLY files: the layout of the reference implementation (graphdeco-inria), which common splat
viewers read.

One ``vertex`` element, binary little-endian float32 properties in this order: ``x y z nx ny nz``
(normals zero), ``f_dc_0..2``, ``f_rest_0..3(K-1)-1`` (channel-major: all of red's higher-order
coefficients, then green's, then blue's), ``opacity`` (logit), ``scale_0..2`` (log),
``rot_0..3`` (w, x, y, z, unnormalised).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from render.gaussians.model import GaussianModel
from worldline.io import atomic_write

PLY_TYPES = {"float": "<f4", "float32": "<f4", "double": "<f8", "float64": "<f8", "uchar": "u1", "uint8": "u1",
             "int": "<i4", "int32": "<i4", "uint": "<u4", "short": "<i2", "ushort": "<u2", "char": "i1"}  # fmt: skip


def property_names(sh_degree: int) -> list[str]:
    """The reference layout's property names, in order."""
    rest = 3 * ((sh_degree + 1) ** 2 - 1)
    return (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"] + [f"f_rest_{i}" for i in range(rest)]
            + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])  # fmt: skip


def save_ply(gaussians: GaussianModel, path: str | Path) -> None:
    """Write ``gaussians`` as a 3DGS PLY, atomically."""
    names = property_names(gaussians.sh_degree)
    n = len(gaussians)
    with torch.no_grad():
        rest = gaussians.shN.detach().transpose(1, 2).reshape(n, -1)  # [N, 3, K-1] -> channel-major
        cols = torch.cat([gaussians.means, torch.zeros(n, 3, device=gaussians.means.device),
                          gaussians.sh0[:, 0], rest, gaussians.opacity_logits[:, None], gaussians.log_scales,
                          gaussians.quats], -1)  # fmt: skip
    data = cols.cpu().numpy().astype("<f4")
    header = "ply\nformat binary_little_endian 1.0\nelement vertex {}\n{}end_header\n".format(
        n, "".join(f"property float {name}\n" for name in names)
    )
    with atomic_write(path, "wb") as f:
        f.write(header.encode("ascii"))
        f.write(np.ascontiguousarray(data).tobytes())


def _read_header(f, path: Path) -> tuple[str, int, list[tuple[str, str]]]:
    """(format, vertex count, vertex properties); the vertex element must come first (3DGS files
    have only it), so its data starts right after the header."""
    first = f.readline()
    if first.strip() != b"ply":
        raise ValueError(f"{path}: not a PLY file (first line {first[:20]!r})")
    fmt, count, props, element, elements = None, None, [], None, []
    while True:
        line = f.readline()
        if not line:
            raise ValueError(f"{path}: truncated header (no end_header)")
        words = line.decode("ascii", errors="replace").split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "end_header":
            break
        need = {"format": 3, "element": 3, "property": 3}.get(words[0], 1)
        if len(words) < need:
            raise ValueError(f"{path}: malformed header line {line.strip()!r}")
        if words[0] == "format":
            fmt = words[1]
        elif words[0] == "element":
            element = words[1]
            elements.append(element)
            if element == "vertex":
                try:
                    count = int(words[2])
                except ValueError:
                    count = -1
                if count < 0:
                    raise ValueError(f"{path}: bad vertex count {words[2]!r}")
        elif words[0] == "property" and element == "vertex":
            if words[1] == "list":
                raise ValueError(f"{path}: list property {words[-1]!r} in the vertex element is not a 3DGS layout")
            if words[1] not in PLY_TYPES:
                raise ValueError(f"{path}: property '{words[2]}' has unknown type {words[1]!r}")
            if any(name == words[2] for name, _ in props):
                raise ValueError(f"{path}: property '{words[2]}' appears twice")
            props.append((words[2], PLY_TYPES[words[1]]))
    if count is None:
        raise ValueError(f"{path}: no vertex element")
    if elements[0] != "vertex":
        raise ValueError(f"{path}: element '{elements[0]}' comes before 'vertex'; not a 3DGS PLY")
    return fmt, count, props


def load_ply(path: str | Path, device: str | torch.device = "cpu") -> GaussianModel:
    """Read a 3DGS PLY (ours or the reference's; property order may vary, names may not)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such PLY file")
    with open(path, "rb") as f:
        fmt, count, props = _read_header(f, path)
        if fmt != "binary_little_endian":
            raise ValueError(f"{path}: format {fmt!r} is not supported (binary_little_endian only)")
        dtype = np.dtype([(name, t) for name, t in props])
        raw = f.read()
    if len(raw) < count * dtype.itemsize:
        whole, rest = divmod(len(raw), dtype.itemsize)
        offset, where = 0, dtype.names[0]
        for name in dtype.names:  # the property the data ends in
            if offset + dtype[name].itemsize > rest:
                where = name
                break
            offset += dtype[name].itemsize
        raise ValueError(f"{path}: truncated at vertex {whole} of {count}, property '{where}' "
                         f"({len(raw)} of {count * dtype.itemsize} data bytes)")  # fmt: skip
    data = np.frombuffer(raw, dtype=dtype, count=count)
    names = set(dtype.names)
    rest = sorted((n for n in names if n.startswith("f_rest_")), key=lambda s: int(s.split("_")[-1]))
    k = len(rest) // 3 + 1
    degree = round(math.sqrt(k)) - 1
    if 3 * ((degree + 1) ** 2 - 1) != len(rest) or degree > 3:
        raise ValueError(f"{path}: {len(rest)} f_rest_* properties match no SH degree 0..3")
    for name in property_names(degree):
        if name not in names and name not in ("nx", "ny", "nz"):
            raise ValueError(f"{path}: missing property '{name}'")

    def cols(*keys):
        return torch.from_numpy(np.stack([data[k].astype(np.float32) for k in keys], -1))

    means = cols("x", "y", "z")
    sh0 = cols("f_dc_0", "f_dc_1", "f_dc_2")[:, None]
    shN = cols(*rest).reshape(count, 3, k - 1).transpose(1, 2) if rest else torch.zeros(count, 0, 3)
    bad = [n for n in dtype.names if not np.isfinite(data[n]).all()]
    if bad:
        raise ValueError(f"{path}: property '{bad[0]}' has non-finite values")
    model = GaussianModel(means, cols("scale_0", "scale_1", "scale_2"), cols("rot_0", "rot_1", "rot_2", "rot_3"),
                          cols("opacity")[:, 0], sh0, shN, degree)  # fmt: skip
    return model.to(device)


def to_open3d(gaussians: GaussianModel):
    """An ``open3d.geometry.PointCloud`` of the means, coloured by the view-independent (SH 0) colour."""
    try:
        import open3d as o3d
    except ImportError:
        raise ImportError("to_open3d needs open3d (pip install open3d)") from None
    from render.gaussians.sh import C0

    pc = o3d.geometry.PointCloud()
    pc.points = o3d.utility.Vector3dVector(gaussians.means.detach().cpu().double().numpy())
    rgb = (gaussians.sh0[:, 0].detach().cpu().double() * C0 + 0.5).clamp(0, 1)
    pc.colors = o3d.utility.Vector3dVector(rgb.numpy())
    return pc
