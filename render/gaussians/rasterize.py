"""Differentiable rasterization of 3D Gaussians: one function, two backends.

``rasterize(gaussians, cameras, width, height, background, backend="auto")`` returns rgb
``[C, H, W, 3]``, alpha ``[C, H, W]`` and expected depth ``[C, H, W]`` (planar z, over alpha) for
a batch of :class:`worldline.Camera` (OpenCV axes, world-to-camera, pixel centres at +0.5).

The pure-PyTorch reference (``backend="torch"``, CPU and CUDA, autograd) follows 3DGS / gsplat:

1. EWA projection: camera-space mean t, covariance W Sigma W^T, the Jacobian J of the perspective
   map at t, 2D covariance J W Sigma W^T J^T + 0.3 I (gsplat's ``eps2d`` low-pass); Gaussians
   closer than ``near`` (0.01 m) are culled.
2. An opacity-aware box as gsplat's: per axis, min(3, sqrt(2 log(255 o))) standard deviations (beyond
   it alpha < 1/255; gsplat caps at 3.33); the box is intersected with 16 x 16 pixel tiles, giving
   (tile, Gaussian) pairs sorted by tile and then depth (gsplat's ``isect``).
3. Every pair draws the pixels of its tile inside the Gaussian's ellipse {alpha >= 1/255, within
   3 sigma}, found row by row in closed form as a per-tile [rows, cols, list] mask whose nonzero
   entries come out grouped by pixel and front to back;
   alpha = min(0.99, o exp(-d^T Sigma2D^-1 d / 2)), and each pixel is composited front to back:
   the transmittance is an exclusive segmented cumulative sum of log(1 - alpha) (float64), and a
   Gaussian that would take it below 1e-4 ends the pixel (as the reference CUDA kernels do).
4. Backward is analytic (:class:`_Composite`), as gsplat's kernel: per pixel, back to front,
   dL/dalpha_i = T_i s_i - (sum of w_j s_j behind i) / (1 - alpha_i), then the chain rule to the
   2D mean, conic, opacity, colour and depth; autograd does the rest (projection, SH).

No Python loop runs over Gaussians or pixels: the work is a few flat tensors of pairs, processed
in chunks of tiles to bound memory, with 1-D gathers and in-place arithmetic (on CPU, allocation
and row gathers cost more than the maths; see :mod:`worldline.runtime`). gsplat
(``backend="gsplat"``, CUDA only; the ``splat`` extra) computes the same quantities with its CUDA
kernels; it draws every pixel of an intersected tile where alpha >= 1/255, so for o > 0.35 it can
also draw a faint (alpha <= 0.011 o) fringe beyond 3 sigma that the reference cuts.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

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
    ``[N, 2, 2]`` (with the low-pass) and conic (its inverse) ``[N, 2, 2]``.

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
    return torch.stack([u, v], -1), z, cov2d, conic


def _rasterize_one(means2d, depth, cov2d, conic, opac, colors, width, height, background, chunk):
    dev, dtype = means2d.device, colors.dtype
    tiles_x, tiles_y = -(-width // TILE), -(-height // TILE)
    u, v = means2d[:, 0].detach(), means2d[:, 1].detach()
    # opacity-aware box (gsplat's, capped at 3 sigma instead of 3.33): alpha = o exp(power) falls to 1/255 at
    # power = -log(255 o), so no pixel beyond sqrt(2 log(255 o)) sigma per axis (at most 3) is drawn
    o = opac.detach()
    extend = torch.sqrt(2.0 * torch.log((o / ALPHA_MIN).clamp_min(1.0))).clamp(max=3.0)
    rx = torch.ceil(extend * torch.sqrt(cov2d[:, 0, 0].detach()))
    ry = torch.ceil(extend * torch.sqrt(cov2d[:, 1, 1].detach()))
    # pixels whose centres (i + 0.5) lie in the box
    bx0 = torch.ceil(u - rx - 0.5).clamp(0, width).long()
    bx1 = torch.floor(u + rx - 0.5).clamp(-1, width - 1).long()
    by0 = torch.ceil(v - ry - 0.5).clamp(0, height).long()
    by1 = torch.floor(v + ry - 0.5).clamp(-1, height - 1).long()
    valid = (depth.detach() > NEAR) & (o >= ALPHA_MIN) & (bx1 >= bx0) & (by1 >= by0)
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
        gid, tile = gid[order], tile[order]
        # each pixel row of a (tile, Gaussian) pair draws the pixels inside the Gaussian's ellipse
        # {alpha >= 1/255, within 3 sigma}: q = d^T conic d <= 2 L with L = min(log(255 o), 4.5); on
        # the row at offset dy the ellipse spans dx in (-b dy -+ sqrt((b^2 - a c) dy^2 + 2 a L)) / a
        ca, cb, cc = (conic[:, 0, 0].detach(), conic[:, 0, 1].detach(), conic[:, 1, 1].detach())
        two_l = 2.0 * torch.log((o / ALPHA_MIN).clamp_min(1.0)).clamp(max=4.5)
        ell = torch.stack([u, v, ca, cb * cb - ca * cc, two_l * ca, -cb / ca], -1)[gid]  # per (tile, Gaussian)
        # per-Gaussian values as contiguous columns: 1-D gathers and scatters are several times
        # faster than row gathers of an [N, k] table on CPU
        feats = [means2d[:, 0], means2d[:, 1], conic[:, 0, 0], conic[:, 0, 1], conic[:, 1, 1], opac,
                 colors[:, 0], colors[:, 1], colors[:, 2], depth]  # fmt: skip
        feats = [f.contiguous() for f in feats]
        n_tiles = tiles_x * tiles_y
        counts = torch.bincount(tile, minlength=n_tiles)
        seg_start = torch.cumsum(counts, 0) - counts
        # chunks of tiles whose [tiles, 256 pixels, longest list] membership mask stays under `chunk`;
        # tiles taken longest list first, so that a chunk's lists have similar lengths (less padding)
        chunks, cur, cur_max = [], [], 0
        by_length = torch.argsort(counts, descending=True, stable=True)
        for t, k in zip(by_length.tolist(), counts[by_length].tolist()):
            if k == 0:
                break
            if cur and (len(cur) + 1) * max(cur_max, k) * TILE * TILE > chunk:
                chunks.append((cur, cur_max))
                cur, cur_max = [], 0
            cur.append(t)
            cur_max = max(cur_max, k)
        if cur:
            chunks.append((cur, cur_max))
        sums, seg_pix = [], []
        for tiles_c, kmax in chunks:
            tc = torch.tensor(tiles_c, device=dev)
            j = torch.arange(kmax, device=dev)
            valid_j = j[None] < counts[tc][:, None]  # [Tc, K]
            pidx = (seg_start[tc][:, None] + j).clamp(max=gid.numel() - 1)  # the tile's depth-sorted pairs
            e = ell[pidx]  # [Tc, K, 6]
            cols = (tc % tiles_x)[:, None] * TILE + torch.arange(TILE, device=dev)  # [Tc, 16]
            rows = (tc // tiles_x)[:, None] * TILE + torch.arange(TILE, device=dev)
            dy = rows[:, :, None].to(e.dtype) + 0.5 - e[:, None, :, 1]  # [Tc, 16 rows, K]
            disc = e[:, None, :, 3] * dy * dy + e[:, None, :, 4]
            half = torch.sqrt(disc.clamp_min(0.0)) / e[:, None, :, 2]
            mid = e[:, None, :, 0] + e[:, None, :, 5] * dy - 0.5  # the row's centre, in pixel indices
            lo = torch.where((disc >= 0) & valid_j[:, None] & (rows[:, :, None] < height), mid - half, math.inf)
            x = torch.where(cols < width, cols.to(e.dtype), math.inf)[:, None, :, None]  # none beyond the border
            member = (x >= lo[:, :, None, :]) & (x <= (mid + half)[:, :, None, :])  # [Tc, 16 rows, 16 cols, K]
            # the pixels of the chunk's tiles are its segments: seg = tile * 256 + row * 16 + col
            n_seg = len(tiles_c) * TILE * TILE
            seg_x = cols[:, None, :].expand(-1, TILE, -1).reshape(-1)
            seg_y = rows[:, :, None].expand(-1, -1, TILE).reshape(-1)
            # (segment, depth rank) in lexicographic order: grouped by pixel, front to back
            flat = member.view(-1).nonzero()[:, 0]
            seg = flat // kmax
            entry = torch.div(seg, TILE * TILE, rounding_mode="floor") * kmax + (flat - seg * kmax)  # tile * K + rank
            g = gid.index_select(0, pidx.view(-1).index_select(0, entry))
            centres = (seg_x.to(dtype) + 0.5, seg_y.to(dtype) + 0.5)
            sums.append(_Composite.apply(g, seg, *centres, n_seg, *feats))
            seg_pix.append(torch.where((seg_x < width) & (seg_y < height), seg_y * width + seg_x, -1))
        # chunks hold disjoint tiles; a tile's pixels beyond the image border hold no pairs
        seg_pix, sums = torch.cat(seg_pix), torch.cat(sums)
        inside = torch.nonzero(seg_pix >= 0)[:, 0]
        acc = acc.index_put((seg_pix[inside],), sums[inside])
    acc_rgb, acc_w, acc_d = acc[:, :3], acc[:, 3], acc[:, 4]
    rgb = acc_rgb + (1.0 - acc_w)[:, None] * background
    exp_depth = acc_d / acc_w.clamp_min(1e-10)
    radius = torch.where(valid, torch.maximum(rx, ry), torch.zeros_like(rx))  # 0: culled or off-image
    return rgb.view(height, width, 3), acc_w.view(height, width), exp_depth.view(height, width), radius


class _Composite(torch.autograd.Function):
    """Front-to-back compositing of depth-sorted pixel-pairs, with the analytic backward of the
    3DGS / gsplat kernels (back to front through each pixel's list) instead of autograd's graph of
    elementwise ops: the pairs are the rasterizer's bulk, and autograd would keep and revisit a
    dozen ``[P]`` intermediates per op.

    ``g``, ``seg`` ``[P]``: the Gaussian and the pixel (segment) of every pair, grouped by segment
    and front to back within one; ``cx``, ``cy`` ``[n_seg]``: the segments' pixel centres; then ten
    per-Gaussian columns ``[N]``: u, v, conic (a, b, c), opacity, r, g, b, depth. Returns per-segment
    sums ``[n_seg, 5]`` of w * (r, g, b, 1, depth), where w = alpha * T and T is the transmittance
    in front of the pair."""

    @staticmethod
    def forward(ctx, g, seg, cx, cy, n_seg, u, v, ca, cb, cc, o, r, gr, bl, d):
        dtype, dev = u.dtype, u.device
        gu, gv, ga, gb, gc, go = (t.index_select(0, g) for t in (u, v, ca, cb, cc, o))
        dx = cx.index_select(0, seg).sub_(gu)
        dy = cy.index_select(0, seg).sub_(gv)
        # power = -(a dx^2 + c dy^2) / 2 - b dx dy, in place: the pairs are millions
        power = (dx * dx).mul_(ga).addcmul_(dy * dy, gc).mul_(-0.5).sub_((dx * dy).mul_(gb))
        alpha_raw = torch.exp(power.clamp(max=0.0)).mul_(go)
        # the pairs come from the ellipse where alpha >= 1/255; one rounded onto its edge is zeroed
        alpha_raw.masked_fill_(alpha_raw < ALPHA_MIN, 0.0)
        ctx.n_cols = u.shape[0]
        ctx.empty = g.numel() == 0
        if ctx.empty:
            return torch.zeros(n_seg, 5, dtype=dtype, device=dev)
        alpha = alpha_raw.clamp(max=ALPHA_MAX)
        # transmittance in front of a pair: the exclusive cumulative sum of log(1 - alpha) within
        # its segment, from one float64 cumulative sum minus the sum before the segment's start
        lengths = torch.bincount(seg, minlength=n_seg)
        starts = (torch.cumsum(lengths, 0) - lengths).clamp(max=g.numel() - 1)  # empty ones: unused
        log1m = torch.log1p(-alpha).double()
        csum = torch.cumsum(log1m, 0)
        before = csum - log1m
        base = before.index_select(0, starts).index_select(0, seg)
        keep = csum - base >= LOG_T_MIN  # a Gaussian taking T below 1e-4 ends the pixel
        trans = torch.exp(before - base).to(dtype)
        w = torch.where(keep, alpha * trans, torch.zeros_like(alpha))
        colour = [t.index_select(0, g) for t in (r, gr, bl, d)]
        terms = torch.stack([w * colour[0], w * colour[1], w * colour[2], w, w * colour[3]], -1)
        ctx.save_for_backward(g, seg, dx, dy, alpha_raw, trans, w, starts, lengths, *colour, ca, cb, cc, o)
        return torch.segment_reduce(terms, "sum", lengths=lengths, axis=0)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_sums):
        n = ctx.n_cols
        if ctx.empty:
            return (None,) * 15
        g, seg, dx, dy, alpha_raw, trans, w, starts, lengths, *colour, ca, cb, cc, o = ctx.saved_tensors
        gp = [grad_sums[:, k].contiguous().index_select(0, seg) for k in range(5)]  # dL/d(sums) per pair
        # s = dL/dw per pair; L = sum_i w_i s_i with w_i = alpha_i prod_{j<i} (1 - alpha_j)
        s = (colour[0] * gp[0]).addcmul_(colour[1], gp[1]).addcmul_(colour[2], gp[2]).add_(gp[3])
        s.addcmul_(colour[3], gp[4])
        csum = torch.cumsum((w * s).double(), 0)
        ends = (starts + lengths - 1).clamp(min=0)
        behind = csum.index_select(0, ends).index_select(0, seg).sub_(csum).to(w.dtype)  # sum of w_j s_j, j behind
        # d alpha_i = T_i s_i - behind_i / (1 - alpha_i), for the drawn pairs under the 0.99 cap
        d_alpha = (trans * s).sub_(behind.div_(1.0 - alpha_raw.clamp(max=ALPHA_MAX)))
        d_alpha.masked_fill_((w <= 0) | (alpha_raw >= ALPHA_MAX), 0.0)
        d_power = d_alpha * alpha_raw  # alpha_raw = o exp(power)
        a, b, c, go = (t.index_select(0, g) for t in (ca, cb, cc, o))
        dxp, dyp = dx * d_power, dy * d_power
        # the ten per-pair gradients as rows of one [10, P] tensor: one scatter along dim 1 is
        # about 3x faster on CPU than ten 1-D index_adds
        rows = torch.empty(10, g.numel(), dtype=w.dtype, device=w.device)
        torch.mul(a, dxp, out=rows[0]).addcmul_(b, dyp)  # du (dx = x + 0.5 - u)
        torch.mul(b, dxp, out=rows[1]).addcmul_(c, dyp)  # dv
        torch.mul(dx, dxp, out=rows[2]).mul_(-0.5)  # d conic a
        torch.mul(dx, dyp, out=rows[3]).neg_()  # d conic b
        torch.mul(dy, dyp, out=rows[4]).mul_(-0.5)  # d conic c
        torch.div(d_power, go, out=rows[5])  # d opacity: exp(power)
        for k, j in enumerate((0, 1, 2, 4)):  # d r, g, b, depth
            torch.mul(w, gp[j], out=rows[6 + k])
        grads = torch.zeros(10, n, dtype=w.dtype, device=w.device).index_add_(1, g, rows)
        return (None,) * 5 + tuple(grads)


def rasterize_dense(g: GaussianModel, cam: Camera, bg: Tensor, chunk: int = 512) -> Tensor:
    """Every Gaussian at every pixel (the same alpha, the same 3-sigma cut), no tiles: a slow oracle
    for the tiled reference (tests) and the baseline of ``tools/bench/splat_raster.py``. One camera
    (batch []), forward only: rgb ``[H, W, 3]``."""
    K, w2c = cam.K.to(g.means), cam.w2c.to(g.means)
    means2d, depth, _, conic = project_gaussians(g.means, g.covariances(), K, w2c, cam.width, cam.height)
    colors = eval_sh(g.sh, g.means - cam.center.to(g.means), g.sh_degree)
    order = torch.argsort(depth, stable=True)
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
        a = torch.where((a >= ALPHA_MIN) & (power >= -4.5), a, torch.zeros_like(a))  # 3 sigma: q <= 9
        trans = torch.cumprod(torch.cat([T[:, None], 1 - a], 1), 1)  # [P, n + 1]: T before / after each
        keep = (trans[:, 1:] >= T_MIN) & ~done[:, None]  # a prefix: T only falls
        rgb = rgb + torch.where(keep, a * trans[:, :-1], torch.zeros_like(a)) @ colors[idx]
        n_kept = keep.sum(1)
        T = trans.gather(1, n_kept[:, None])[:, 0]
        done |= n_kept < len(idx)
    return (rgb + T[:, None] * bg).reshape(cam.height, cam.width, 3)


def rasterize_torch(gaussians: GaussianModel, cameras: Camera, background: Tensor | None = None,
                    sh_degree: int | None = None, chunk: int = 1 << 22) -> dict[str, Tensor]:  # fmt: skip
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
    for c, (_, depth, cov2d, conic) in enumerate(projected):
        colors = eval_sh(sh, gaussians.means - c2w_centres[c], deg)
        rgb, alpha, d, radius = _rasterize_one(means2d_all[c], depth, cov2d, conic, opac, colors, cams.width,
                                              cams.height, bg[c] if bg.ndim == 2 else bg, chunk)  # fmt: skip
        outs["rgb"].append(rgb)
        outs["alpha"].append(alpha)
        outs["depth"].append(d)
        outs["radii"].append(radius)
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
    ``[..., C, H, W]``, plus ``means2d`` ``[..., C, N, 2]`` (its ``.grad`` drives densification) and
    ``radii`` ``[..., C, N]`` (the larger half-side of the opacity-aware box in pixels; 0 where the
    Gaussian is culled or its box holds no pixel centre). ``width``/``height`` default to the
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
