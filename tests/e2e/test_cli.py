import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from envs.mvbench.dataset import DemoFile

MVBENCH = [sys.executable, "-m", "envs.mvbench.cli"]


def _run(args, cwd):
    out = subprocess.run(MVBENCH + args, cwd=cwd, capture_output=True, text=True, env=dict(os.environ))
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_views_contact_sheet(tmp_path):
    _run(["views", "--task", "PickCube", "--size", "48", "--out", str(tmp_path / "v.png")], tmp_path)
    sheet = np.asarray(Image.open(tmp_path / "v.png"))
    assert sheet.shape == (6 * 48, 6 * 48, 3)  # 6 groups, at most 6 views each
    assert sheet[:48].std() > 10  # the training row is a real rendering


def test_collect_cli(tmp_path):
    stdout = _run(
        ["collect", "--task", "PickCube", "--episodes", "2", "--size", "32", "--out", str(tmp_path)], tmp_path
    )
    assert "PickCube.hdf5" in stdout
    with DemoFile(tmp_path / "PickCube.hdf5") as f:
        assert len(f) == 2
        assert set(f[0].cameras) == {f"train_{i}" for i in range(6)}  # the wrist camera is opt-in


@pytest.mark.parametrize(
    "args, names",
    [
        (["eval-expert", "--episodes", "0"], "--episodes"),
        (["views", "--task", "Foo"], "--task: unknown task 'Foo'"),
        (["collect", "--views", "az+15", "--episodes", "1"], "--views: 'az+15' is a novel (held-out) view group"),
        (["collect", "--views", "nope"], "--views: unknown view group 'nope'"),
        (["eval-expert", "--groups", "az+99"], "--groups: unknown view group 'az+99'"),
        (["collect", "--render-profile", "shiny"], "--render-profile: unknown profile 'shiny'"),
        (["views", "--seed", "-1"], "--seed: expected a non-negative integer"),
        (["eval-expert", "--size", "100000"], "--size: expected 8..1024 pixels"),
        (["list", "--split", "nosuch"], "--split: split: unknown split 'nosuch'"),
        (["collect", "--out", "IS_A_FILE"], "--out: "),
        (["eval-expert", "--out", "IS_A_FILE/sub"], "--out: "),
    ],
)
def test_bad_input_is_one_line_naming_the_argument(tmp_path, args, names):
    (tmp_path / "IS_A_FILE").write_text("not a directory")
    if "--out" not in args and args[0] != "list":
        args = args + ["--out", str(tmp_path / "o")]
    out = subprocess.run(MVBENCH + args, cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 2
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert names in lines[0]
    assert not (tmp_path / "o").exists()  # refused before doing anything


@pytest.mark.slow
def test_eval_expert_cli(tmp_path):
    stdout = _run(
        ["eval-expert", "--tasks", "PickCube", "--groups", "train", "az+45", "--seeds", "0", "--size", "32",
         "--out", str(tmp_path)],
        tmp_path,
    )  # fmt: skip
    assert "ExpertPolicy" in stdout and "RandomPolicy" in stdout
    assert (tmp_path / "expert.json").exists() and (tmp_path / "random.json").exists()
