"""``render nerf train | eval | render`` end to end on a tiny analytic scene, and bad input."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

RENDER = [sys.executable, "-m", "render.cli"]
TINY = ["--model.field-depth", "2", "--model.field-width", "32", "--model.field-skips", "1",
        "--model.sampler-depth", "2", "--model.sampler-width", "32", "--model.refine-depth", "2",
        "--model.refine-width", "32", "--model.coarse-samples", "8", "--model.fine-samples", "8",
        "--batch-rays", "64", "--save-every", "2", "--log-every", "1"]  # fmt: skip


def _run(args, cwd, ok=True):
    out = subprocess.run(RENDER + args, cwd=cwd, capture_output=True, text=True)
    if ok:
        assert out.returncode == 0, out.stderr[-3000:]
    return out


@pytest.mark.parametrize("method", ["pronerf", "vanilla"])
def test_train_eval_render(tmp_path, plane_scene, method):
    run = tmp_path / "run"
    args = ["nerf", "train", "--data", str(plane_scene), "--out", str(run), "--steps", "3", "--model.method", method]
    _run(args + TINY, tmp_path)
    assert (run / "checkpoints" / "step_0000003" / "model.safetensors").is_file()
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 3 and any((run / "tb").iterdir())
    again = _run(args + TINY, tmp_path)  # finished: resumes and stops at once
    assert "resumed from" in again.stdout
    _run(["nerf", "eval", "--checkpoint", str(run), "--out", str(tmp_path / "eval.json")], tmp_path)
    res = json.loads((tmp_path / "eval.json").read_text())
    assert res["method_name"] == method and res["results"]["lpips"] is None
    assert {"psnr", "ssim", "lpips", "num_rays_per_sec", "fps", "samples_per_ray"} <= set(res["results"])
    assert res["results"]["samples_per_ray"] == (8 if method == "pronerf" else 24)
    out = tmp_path / "renders"
    _run(["nerf", "render", "--checkpoint", str(run), "--out", str(out), "--orbit", "4"], tmp_path)
    depth = np.asarray(Image.open(out / "depth" / "00000.png"))
    assert depth.dtype == np.uint16 and depth.shape == (16, 16)
    assert np.asarray(Image.open(out / "rgb" / "00000.png")).shape == (16, 16, 3)
    import imageio.v3 as iio

    frames = iio.imread(out / "orbit.mp4")
    assert frames.shape[0] == 4 and frames.shape[1:3] == (16, 16)


def test_bad_input_one_line(tmp_path, plane_scene):
    out = _run(["nerf", "train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "r")], tmp_path, ok=False)
    assert out.returncode == 2 and "no such dataset folder" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    out = _run(["nerf", "eval", "--checkpoint", str(tmp_path)], tmp_path, ok=False)
    assert out.returncode == 2 and "no checkpoint in" in out.stderr
    out = _run(["nerf", "train", "--data", str(plane_scene), "--model.method", "instant"], tmp_path, ok=False)
    assert out.returncode == 2 and "method" in out.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("stepz: 3\n")
    out = _run(["nerf", "train", "--config", str(bad), "--data", str(plane_scene)], tmp_path, ok=False)
    assert out.returncode == 2 and "stepz" in out.stderr and "steps" in out.stderr
