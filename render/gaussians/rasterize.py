"""Differentiable rasterization of 3D Gaussians: one function, two backends.

``rasterize(gaussians, cameras, width, height, background, backend="auto")`` returns rgb
``[C, H, W, 3]``, alpha ``[C, H, W]`` and expected depth ``[C, H, W]`` (planar z, over alpha) for
a batch of :class:`worldline.Camera` (OpenCV axes, world-to-camera, pixel centres at +0.5).

The pure-PyTorch reference (``backend="torch"``, CPU and CUDA, autograd) follows 3DGS / gsplat:

1. EWA projection: camera-space mean t, covariance W Sigma W^T, the Jacobian J of the perspective
   map at t, 2D covariance J W Sigma W^T J^T + 0.3 I (gsplat's ``eps2d`` low-pass); Gaussians
   closer than ``near`` (0.01 m) are culled.
2. A 3-sigma radius from the larger eigenvalue; the bounding square is intersected with 16 x 16
   pixel tiles, giving (tile, Gaussian) pairs sorted by tile and then depth (gsplat's ``isect``).
3. Every pair is expanded to the pixels of its tile inside the Gaussian's square;
   alpha = min(0.99, o exp(-d^T Sigma2D^-1 d / 2)), contributions under 1/255 are skipped, and
   the pixel is composited front to back: each pixel's transmittance is an exclusive cumulative
   product along its tile's depth-sorted list (a segmented cumulative sum of log(1 - alpha), in
   float64, after a stable sort of the pixel-pairs by pixel), and a Gaussian that would take the
   transmittance below 1e-4 ends the pixel (as the reference CUDA kernels do).

No Python loop runs over Gaussians or pixels: the work is a few flat tensors of pairs, processed
in chunks of tiles to bound memory. gsplat (``backend="gsplat"``, CUDA only; the ``splat``
extra) computes the same quantities with its CUDA kernels.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from render.gaussians.model import GaussianModel
from render.gaussians.sh import eval_sh
from worldline import Camera, pixel_centers

TILE = 16
EPS2D = 0.3
ALPHA_MAX = 0.99
ALPHA_MIN = 1.0 / 255.0
T_MIN = 1e-4
NEAR = 0.01
LOG_T_MIN = math.log(T_MIN)


def project_gaussians(means: Tensor, covs: Tensor, K: Tensor, w2c: Tensor, width: int, height: int,
                      eps2d: float = EPS2D):  # fmt: skip
    """EWA projection for one camera: means2d ``[N, 2]`` (pixels), depth ``[N]``, 2D covariance
    ``[N, 2, 2]`` (with the low-pass), conic (its inverse) ``[N, 2, 2]``, 3-sigma radius ``[N]``.

    The Jacobian is taken at the mean with x/z and y/z clamped to the field of view plus 30 % of
    its half-width (as 3DGS and gsplat do): outside the view the perspective map's linearisation
    blows up and would smear a Gaussian across the whole image."""
    rot, trans = w2c[:3, :3], w2c[:3, 3]
    t = means @ rot.T + trans  # [N, 3] camera space
    z = t[:, 2]
    # Gaussians behind the near plane are culled; clamping their z keeps J, the covariance and the
    # conic finite, so their (zero) gradient does not turn into 0 * inf = NaN in backward
    z_safe = z.clamp_min(NEAR)
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    u = fx * t[:, 0] / z_safe + cx
    v = fy * t[:, 1] / z_safe + cy
    tan_x, tan_y = 0.5 * width / fx, 0.5 * height / fy
    lim_xp, lim_xn = (width - cx) / fx + 0.3 * tan_x, cx / fx + 0.3 * tan_x
    lim_yp, lim_yn = (height - cy) / fy + 0.3 * tan_y, cy / fy + 0.3 * tan_y
    tx = z_safe * torch.minimum(torch.maximum(t[:, 0] / z_safe, -lim_xn), lim_xp)
    ty = z_safe * torch.minimum(torch.maximum(t[:, 1] / z_safe, -lim_yn), lim_yp)
    zeros = torch.zeros_like(z)
    J = torch.stack(
        [
            torch.stack([fx / z_safe, zeros, -fx * tx / z_safe**2], -1),
            torch.stack([zeros, fy / z_safe, -fy * ty / z_safe**2], -1),
        ],
        -2,
    )  # fmt: skip  [N, 2, 3]
    cov_cam = rot @ covs @ rot.T
    cov2d = J @ cov_cam @ J.transpose(-1, -2) + eps2d * torch.eye(2, dtype=means.dtype, device=means.device)
    a, b, c = cov2d[:, 0, 0], cov2d[:, 0, 1], cov2d[:, 1, 1]
    det = (a * c - b * b).clamp_min(1e-12)
    conic = torch.stack([torch.stack([c, -b], -1), torch.stack([-b, a], -1)], -2) / det[:, None, None]
    mid = 0.5 * (a + c)
    lam = mid + torch.sqrt((mid * mid - det).clamp_min(0.1))
    radius = torch.ceil(3.0 * torch.sqrt(lam))
    return torch.stack([u, v], -1), z, cov2d, conic, radius


def _rasterize_one(means2d, depth, conic, radius, opac, colors, width, height, background, chunk):
    dev, dtype = means2d.device, colors.dtype
    tiles_x, tiles_y = -(-width // TILE), -(-height // TILE)
    u, v, r = means2d[:, 0].detach(), means2d[:, 1].detach(), radius.detach()
    # pixels whose centres (i + 0.5) lie in the 3-sigma square
    bx0 = torch.ceil(u - r - 0.5).clamp(0, width).long()
    bx1 = torch.floor(u + r - 0.5).clamp(-1, width - 1).long()
    by0 = torch.ceil(v - r - 0.5).clamp(0, height).long()
    by1 = torch.floor(v + r - 0.5).clamp(-1, height - 1).long()
    valid = (depth.detach() > NEAR) & (r > 0) & (bx1 >= bx0) & (by1 >= by0)
    # (Gaussian, tile) pairs, sorted by tile and then depth, as gsplat's intersection step
    tx0, tx1 = bx0 // TILE, bx1.clamp_min(0) // TILE
    ty0, ty1 = by0 // TILE, by1.clamp_min(0) // TILE
    nx, ny = tx1 - tx0 + 1, ty1 - ty0 + 1
    count = torch.where(valid, nx * ny, torch.zeros_like(nx))
    gid = torch.repeat_interleave(torch.arange(len(count), device=dev), count)
    acc = torch.zeros(height * width, 5, dtype=dtype, device=dev)  # rgb, weight sum (alpha), depth
    if gid.numel() > 0:
        local = torch.arange(gid.numel(), device=dev) - (torch.cumsum(count, 0) - count)[gid]
        tx, ty = tx0[gid] + local % nx[gid], ty0[gid] + local // nx[gid]
        tile = ty * tiles_x + tx
        order = torch.argsort(depth.detach()[gid], stable=True)
        order = order[torch.argsort(tile[order], stable=True)]
        gid, tile, tx, ty = gid[order], tile[order], tx[order], ty[order]
        # each pair covers the part of its Gaussian's square inside its tile
        px0 = torch.maximum(bx0[gid], tx * TILE)
        px1 = torch.minimum(bx1[gid], tx * TILE + TILE - 1)
        py0 = torch.maximum(by0[gid], ty * TILE)
        py1 = torch.minimum(by1[gid], ty * TILE + TILE - 1)
        rects = torch.stack([px0, px1, py0, py1], -1)  # [P, 4] inclusive pixel bounds
        # per-Gaussian values gathered once per pixel-pair (one index op, one index_add backward)
        feats = torch.cat(
            [
                means2d,
                conic[:, 0, 0, None],
                conic[:, 0, 1, None],
                conic[:, 1, 1, None],
                opac[:, None],
                colors,
                depth[:, None],
            ],
            -1,
        )  # fmt: skip  [N, 10]
        n_tiles = tiles_x * tiles_y
        counts = torch.bincount(tile, minlength=n_tiles)
        seg_start = torch.cumsum(counts, 0) - counts
        # chunks of tiles whose [tiles, 256 pixels, longest list] membership mask stays under `chunk`
        chunks, cur, cur_max = [], [], 0
        for t, k in enumerate(counts.tolist()):
            if k == 0:
                continue
            if cur and (len(cur) + 1) * max(cur_max, k) * TILE * TILE > chunk:
                chunks.append((cur, cur_max))
                cur, cur_max = [], 0
            cur.append(t)
            cur_max = max(cur_max, k)
        if cur:
            chunks.append((cur, cur_max))
        offs = torch.arange(TILE * TILE, device=dev)
        for tiles_c, kmax in chunks:
            tc = torch.tensor(tiles_c, device=dev)
            j = torch.arange(kmax, device=dev)
            valid_j = j[None] < counts[tc][:, None]  # [Tc, K]
            pidx = (seg_start[tc][:, None] + j).clamp(max=gid.numel() - 1)  # the tile's depth-sorted pairs
            r = rects[pidx]  # [Tc, K, 4]
            X = (tc % tiles_x)[:, None] * TILE + offs % TILE  # [Tc, 256]
            Y = (tc // tiles_x)[:, None] * TILE + offs // TILE
            Xe, Ye = X[:, :, None], Y[:, :, None]
            member = (
                (Xe >= r[:, None, :, 0])
                & (Xe <= r[:, None, :, 1])
                & (Ye >= r[:, None, :, 2])
                & (Ye <= r[:, None, :, 3])
                & valid_j[:, None, :]
            )  # fmt: skip  [Tc, 256, K]
            # (tile, pixel, depth rank) in lexicographic order: grouped by pixel, front to back
            nz = member.nonzero()
            ti, pi = nz[:, 0], nz[:, 1]
            pair = pidx[ti, nz[:, 2]]
            x, y = X[ti, pi], Y[ti, pi]
            pix = y * width + x
            f = feats[gid[pair]]  # [P, 10]
            dx = x.to(dtype) + 0.5 - f[:, 0]
            dy = y.to(dtype) + 0.5 - f[:, 1]
            power = -0.5 * (f[:, 2] * dx * dx + f[:, 4] * dy * dy) - f[:, 3] * dx * dy
            alpha = (f[:, 5] * torch.exp(power.clamp(max=0.0))).clamp(max=ALPHA_MAX)
            alpha = torch.where((alpha >= ALPHA_MIN) & (power <= 0), alpha, torch.zeros_like(alpha))
            # exclusive transmittance per pixel: segmented cumulative sum of log(1 - alpha)
            log1m = torch.log1p(-alpha).double()
            csum = torch.cumsum(log1m, 0)
            first = torch.ones_like(pix, dtype=torch.bool)
            first[1:] = pix[1:] != pix[:-1]
            seg = torch.cumsum(first.long(), 0) - 1
            start_idx = torch.nonzero(first)[:, 0]
            base = (csum - log1m)[start_idx][seg]  # cumulative sum before each pixel's first entry
            log_t_incl = csum - base
            keep = log_t_incl >= LOG_T_MIN  # a Gaussian taking T below 1e-4 ends the pixel
            w = torch.where(keep, alpha * torch.exp((log_t_incl - log1m).to(dtype)), torch.zeros_like(alpha))
            vals = torch.cat([f[:, 6:9], torch.ones_like(w)[:, None], f[:, 9:10]], -1)  # rgb, 1, depth
            acc = acc.index_add(0, pix, w[:, None] * vals)
    acc_rgb, acc_w, acc_d = acc[:, :3], acc[:, 3], acc[:, 4]
    rgb = acc_rgb + (1.0 - acc_w)[:, None] * background
    exp_depth = acc_d / acc_w.clamp_min(1e-10)
    return rgb.view(height, width, 3), acc_w.view(height, width), exp_depth.view(height, width), valid


def rasterize_dense(g: GaussianModel, cam: Camera, bg: Tensor, chunk: int = 512) -> Tensor:
    """Every Gaussian at every pixel, no tiles, no 3-sigma cut: a slow oracle for the tiled reference
    (tests) and the baseline of ``tools/bench/splat_raster.py``. One camera (batch []), forward only:
    rgb ``[H, W, 3]``."""
    K, w2c = cam.K.to(g.means), cam.w2c.to(g.means)
    means2d, depth, _, conic, _ = project_gaussians(g.means, g.covariances(), K, w2c, cam.width, cam.height)
    colors = eval_sh(g.sh, g.means - cam.center.to(g.means), g.sh_degree)
    order = torch.argsort(depth)
    order = order[depth[order] > NEAR]
    pix = pixel_centers(cam.height, cam.width, dtype=g.means.dtype, device=g.means.device).reshape(-1, 2)
    T = torch.ones(pix.shape[0], dtype=g.means.dtype, device=g.means.device)
    done = torch.zeros(pix.shape[0], dtype=torch.bool, device=g.means.device)
    rgb = torch.zeros(pix.shape[0], 3, dtype=g.means.dtype, device=g.means.device)
    for i in range(0, len(order), chunk):
        idx = order[i : i + chunk]
        d = pix[:, None] - means2d[idx][None]  # [P, n, 2]
        c = conic[idx]
        power = -0.5 * (c[:, 0, 0] * d[..., 0] ** 2 + c[:, 1, 1] * d[..., 1] ** 2) - c[:, 0, 1] * d[..., 0] * d[..., 1]
        a = (g.opacities[idx] * torch.exp(power)).clamp(max=ALPHA_MAX)
        a = torch.where(a >= ALPHA_MIN, a, torch.zeros_like(a))
        trans = torch.cumprod(torch.cat([T[:, None], 1 - a], 1), 1)  # [P, n + 1]: T before / after each
        keep = (trans[:, 1:] >= T_MIN) & ~done[:, None]  # a prefix: T only falls
        rgb = rgb + torch.where(keep, a * trans[:, :-1], torch.zeros_like(a)) @ colors[idx]
        n_kept = keep.sum(1)
        T = trans.gather(1, n_kept[:, None])[:, 0]
        done |= n_kept < len(idx)
    return (rgb + T[:, None] * bg).reshape(cam.height, cam.width, 3)


def rasterize_torch(gaussians: GaussianModel, cameras: Camera, background: Tensor | None = None,
                    sh_degree: int | None = None, chunk: int = 1 << 24) -> dict[str, Tensor]:  # fmt: skip
    """The pure-PyTorch reference (see the module docstring); ``cameras`` batch shape [C] or []."""
    deg = gaussians.sh_degree if sh_degree is None else sh_degree
    cams = cameras if cameras.batch_shape else cameras[None]
    K = cams.K.expand(*cams.batch_shape, 3, 3).to(gaussians.means)
    w2c = cams.w2c.expand(*cams.batch_shape, 4, 4).to(gaussians.means)
    bg = torch.zeros(3) if background is None else torch.as_tensor(background)
    bg = bg.to(gaussians.means)
    covs = gaussians.covariances()
    opac = gaussians.opacities
    sh = gaussians.sh
    c2w_centres = cams.center.to(gaussians.means)
    projected = [project_gaussians(gaussians.means, covs, K[c], w2c[c], cams.width, cams.height)
                 for c in range(K.shape[0])]  # fmt: skip
    # the returned means2d [C, N, 2] is the tensor the images are drawn from, so after backward its
    # .grad (retain_grad) holds the screen-space gradient that densification accumulates
    means2d_all = torch.stack([p[0] for p in projected])
    outs = {"rgb": [], "alpha": [], "depth": [], "radii": []}
    for c, (_, depth, _, conic, radius) in enumerate(projected):
        colors = eval_sh(sh, gaussians.means - c2w_centres[c], deg)
        rgb, alpha, d, drawn = _rasterize_one(means2d_all[c], depth, conic, radius, opac, colors, cams.width,
                                              cams.height, bg[c] if bg.ndim == 2 else bg, chunk)  # fmt: skip
        outs["rgb"].append(rgb)
        outs["alpha"].append(alpha)
        outs["depth"].append(d)
        outs["radii"].append(torch.where(drawn, radius, torch.zeros_like(radius)))  # 0: culled or off-image
    out = {k: torch.stack(v) for k, v in outs.items()}
    out["means2d"] = means2d_all
    if not cameras.batch_shape:
        out = {k: v[0] for k, v in out.items()}
    return out


def rasterize_gsplat(gaussians: GaussianModel, cameras: Camera, background: Tensor | None = None,
                     sh_degree: int | None = None) -> dict[str, Tensor]:  # fmt: skip
    """gsplat's ``rasterization`` with our layout: viewmats = w2c (OpenCV), Ks, quats (w, x, y, z),
    linear scales, sigmoid opacities, SH coefficients [N, K, 3] with ``sh_degree``, "RGB+ED"."""
    try:
        from gsplat import rasterization
    except ImportError:
        raise ImportError("backend 'gsplat' needs gsplat: pip install -e '.[splat]' (CUDA only)") from None
    deg = gaussians.sh_degree if sh_degree is None else sh_degree
    cams = cameras if cameras.batch_shape else cameras[None]
    C = cams.batch_shape[0]
    dev = gaussians.means.device
    viewmats = cams.w2c.expand(C, 4, 4).to(dev, torch.float32)
    Ks = cams.K.expand(C, 3, 3).to(dev, torch.float32)
    bg = torch.zeros(3, device=dev) if background is None else torch.as_tensor(background, device=dev).float()
    bg = bg.expand(C, 3).contiguous()  # gsplat appends the depth channel's 0 itself for RGB+ED
    colors, alphas, meta = rasterization(
        gaussians.means, torch.nn.functional.normalize(gaussians.quats, dim=-1), gaussians.scales,
        gaussians.opacities, gaussians.sh, viewmats, Ks, cams.width, cams.height, near_plane=NEAR,
        eps2d=EPS2D, sh_degree=deg, packed=False, render_mode="RGB+ED",
        backgrounds=bg,
    )  # fmt: skip
    radii = meta["radii"]
    if radii.ndim == 3:  # gsplat >= 1.5: per-axis radii [C, N, 2]
        radii = torch.where((radii > 0).all(-1), radii.amax(-1), torch.zeros_like(radii[..., 0]))
    out = {"rgb": colors[..., :3], "alpha": alphas[..., 0], "depth": colors[..., 3], "means2d": meta["means2d"],
           "radii": radii.float()}  # fmt: skip
    if not cameras.batch_shape:
        out = {k: v[0] for k, v in out.items()}
    return out


def rasterize(
    gaussians: GaussianModel,
    cameras: Camera,
    width: int | None = None,
    height: int | None = None,
    background: Tensor | None = None,
    backend: str = "auto",
    sh_degree: int | None = None,
) -> dict:
    """Render ``gaussians`` from ``cameras``: rgb ``[..., C, H, W, 3]``, alpha and expected depth
    ``[..., C, H, W]``, plus ``means2d`` (for densification). ``width``/``height`` default to the
    cameras' (given, they must match: resize the camera with :meth:`worldline.Camera.resize`).
    ``backend``: "torch" (reference), "gsplat" (CUDA), or "auto" (gsplat when installed and on CUDA)."""
    if (width is not None and width != cameras.width) or (height is not None and height != cameras.height):
        raise ValueError(f"width/height {width}x{height} differ from the cameras' {cameras.width}x{cameras.height}; "
                         "use Camera.resize")  # fmt: skip
    if backend not in ("auto", "torch", "gsplat"):
        raise ValueError(f"backend: expected auto, torch or gsplat, got {backend!r}")
    if backend == "auto":
        backend = "torch"
        if gaussians.means.is_cuda:
            try:
                import gsplat  # noqa: F401

                backend = "gsplat"
            except ImportError:
                pass
    if backend == "gsplat":
        if not gaussians.means.is_cuda:
            raise ValueError("backend 'gsplat' runs on CUDA only; move the model to a GPU or use backend='torch'")
        return rasterize_gsplat(gaussians, cameras, background, sh_degree)
    return rasterize_torch(gaussians, cameras, background, sh_degree)
