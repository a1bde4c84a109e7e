"""Speed of the Gaussian rasterizers: frames/s of the pure-PyTorch reference, forward and
forward + backward, at 128 x 128 for 10k and 100k Gaussians; against a dense baseline (every
Gaussian at every pixel, no tiles: the same math without the tile intersection) measured in the
same run; on a GPU also gsplat against the reference.

    python tools/bench/splat_raster.py                 # CPU; JSON: outputs/bench/splat_raster.json
    python tools/bench/splat_raster.py --device cuda   # + gsplat when installed
    python tools/bench/splat_raster.py --default-malloc  # without worldline.runtime.retain_freed_memory

The scene: N Gaussians uniform in a unit ball (random colours, SH degree 3, sizes from the
nearest-neighbour distance as 3DGS initialises them), seen from 3 m with a 50 degree camera.
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from render.gaussians.model import GaussianModel  # noqa: E402
from render.gaussians.rasterize import rasterize, rasterize_dense  # noqa: E402
from worldline import Camera  # noqa: E402
from worldline.io import save_json  # noqa: E402
from worldline.runtime import retain_freed_memory  # noqa: E402
from worldline.transforms import look_at  # noqa: E402


def timed(fn, repeats: int, sync) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[10000, 100000])
    p.add_argument("--resolution", type=int, default=128)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dense-baseline-max", type=int, default=10000, help="largest N for the dense baseline")
    p.add_argument("--out", type=Path, default=Path("outputs/bench/splat_raster.json"))
    p.add_argument(
        "--default-malloc",
        action="store_true",
        help="leave glibc's malloc as it is (by default freed memory is kept for reuse, as `render` does)",
    )
    a = p.parse_args(argv)
    retained = False if a.default_malloc else retain_freed_memory()
    dev = torch.device(a.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    w2c = look_at(torch.tensor([0.0, -3.0, 0.8]), torch.zeros(3), torch.tensor([0.0, 0.0, 1.0]))
    cam = Camera.from_fov(math.radians(50), a.resolution, a.resolution, w2c=w2c).to(dev)
    bg = torch.ones(3, device=dev)
    rows = {}
    for n in a.sizes:
        g = GaussianModel.random_in_sphere(n, 1.0, seed=0).to(dev)
        row = {}

        def fwd(backend, g=g):
            with torch.no_grad():
                rasterize(g, cam, background=bg, backend=backend)

        def fwd_bwd(backend, g=g):
            g.zero_grad(set_to_none=True)
            out = rasterize(g, cam, background=bg, backend=backend)
            out["rgb"].sum().backward()

        backends = ["torch"]
        if dev.type == "cuda":
            try:
                import gsplat  # noqa: F401

                backends.append("gsplat")
            except ImportError:
                print("gsplat not installed: reference only")
        for b in backends:
            f = timed(lambda b=b: fwd(b), a.repeats, sync)
            fb = timed(lambda b=b: fwd_bwd(b), a.repeats, sync)
            row[b] = {"forward_fps": 1 / f, "forward_backward_fps": 1 / fb}
        with torch.no_grad():
            out = rasterize(g, cam, background=bg, backend="torch")
        row["coverage"] = float(out["alpha"].mean())
        if n <= a.dense_baseline_max:
            with torch.no_grad():
                dense = rasterize_dense(g, cam, bg)
                f = timed(lambda g=g: rasterize_dense(g, cam, bg), max(1, a.repeats // 2), sync)
            row["dense_baseline"] = {"forward_fps": 1 / f,
                                     "max_abs_diff_vs_reference": float((dense - out["rgb"]).abs().max())}  # fmt: skip
            row["reference_vs_dense_forward"] = row["torch"]["forward_fps"] / row["dense_baseline"]["forward_fps"]
        if "gsplat" in row:
            row["gsplat_vs_reference_forward_backward"] = (row["gsplat"]["forward_backward_fps"]
                                                           / row["torch"]["forward_backward_fps"])  # fmt: skip
        rows[str(n)] = row
        msg = "  ".join(f"{b}: fwd {row[b]['forward_fps']:.2f} fps, fwd+bwd {row[b]['forward_backward_fps']:.2f} fps"
                        for b in backends)  # fmt: skip
        extra = (
            f"  (dense baseline fwd {row['dense_baseline']['forward_fps']:.3f} fps)" if "dense_baseline" in row else ""
        )
        print(f"{n:7d} Gaussians @ {a.resolution}px  {msg}{extra}", flush=True)
    settings = {"resolution": a.resolution, "repeats": a.repeats, "device": str(dev),
                "threads": torch.get_num_threads(), "retain_freed_memory": retained,
                "machine": platform.machine(), "torch": torch.__version__,
                "cuda": torch.cuda.get_device_name() if dev.type == "cuda" else None}  # fmt: skip
    save_json({"settings": settings, "results": rows}, a.out)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
