"""vla train: checkpoints, exact resume after SIGKILL, bad input."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from safetensors import safe_open

from envs.mvbench.collect import CollectConfig, collect_task

TINY = ["--model.vision.image-size", "32", "--model.vision.grid", "2", "--model.d-model", "32", "--model.layers", "1",
        "--model.heads", "2", "--model.ffn", "64", "--model.dropout", "0.1"]  # fmt: skip


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    out = tmp_path_factory.mktemp("demos")
    collect_task("PickCube", out, CollectConfig(episodes=2, width=32, height=32))
    return out


def _train_cmd(demos, out, steps, *extra):
    return [sys.executable, "-m", "vla.cli", "train", "--data", str(demos), "--out", str(out), "--steps", str(steps),
            "--save-every", "4", "--log-every", "1", "--batch-size", "8", "--warmup", "5", "--threads", "1",
            *TINY, *extra]  # fmt: skip


def _losses(run):
    rows = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows}, [r["step"] for r in rows]


def test_killed_run_resumes_exactly(tmp_path, demos):
    steps = 24
    full = subprocess.run(_train_cmd(demos, tmp_path / "a", steps), capture_output=True, text=True)
    assert full.returncode == 0, full.stderr[-2000:]
    ref, _ = _losses(tmp_path / "a")
    assert sorted(ref) == list(range(1, steps + 1))

    run = tmp_path / "b"
    proc = subprocess.Popen(_train_cmd(demos, run, steps), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline:  # kill it mid-run, after its second checkpoint
        if (run / "metrics.jsonl").exists() and len((run / "metrics.jsonl").read_text().splitlines()) >= 10:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = sorted(p.name for p in (run / "checkpoints").glob("step_*"))
    assert done and done[-1] != f"step_{steps:08d}", "the run should have been killed before the end"
    again = subprocess.run(_train_cmd(demos, run, steps), capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    start = int(done[-1].split("_")[1])
    assert f"resumed from {run / 'checkpoints' / done[-1]} at step {start}" in again.stdout  # not a fresh start
    got, order = _losses(run)
    assert order == list(range(1, steps + 1)), "each step logged once, in order"
    for s in range(1, steps + 1):
        assert abs(got[s] - ref[s]) < 1e-5, f"step {s}: {got[s]} vs uninterrupted {ref[s]}"
    kept = sorted(p.name for p in (run / "checkpoints").glob("step_*"))
    assert kept == [f"step_{s:08d}" for s in (16, 20, 24)]  # keep_last 3
    with safe_open(str(run / "checkpoints" / kept[-1] / "optimizer.safetensors"), "pt") as f:
        names = list(f.keys())
    assert "rng.torch" in names and any(k.endswith(".exp_avg") for k in names)
    trainer = json.loads((run / "checkpoints" / kept[-1] / "trainer.json").read_text())
    assert trainer["step"] == steps and trainer["scheduler"]["last_epoch"] == steps


def _vla(args, cwd):
    return subprocess.run([sys.executable, "-m", "vla.cli", *args], cwd=cwd, capture_output=True, text=True)


def test_bad_input_is_one_line_naming_it(tmp_path, demos):
    out = _vla(["train", "--data", str(tmp_path / "missing.hdf5"), "--out", str(tmp_path / "r"), *TINY], tmp_path)
    assert out.returncode == 2 and "data: no such file or folder" in out.stderr and "missing.hdf5" in out.stderr
    broken = tmp_path / "broken.hdf5"
    broken.write_bytes(b"not hdf5 at all")
    out = _vla(["train", "--data", str(broken), "--out", str(tmp_path / "r"), *TINY], tmp_path)
    assert out.returncode == 2 and "broken.hdf5: not a readable HDF5 file" in out.stderr
    preset = tmp_path / "p.yaml"
    preset.write_text("d_model: 32\nlayerz: 2\n")
    out = _vla(["train", "--config", str(preset), "--data", str(demos)], tmp_path)
    assert out.returncode == 2 and "unknown key 'layerz'" in out.stderr and "p.yaml" in out.stderr
    for result in (out,):
        assert "Traceback" not in result.stderr
    first = subprocess.run(_train_cmd(demos, tmp_path / "run", 4), capture_output=True, text=True)
    assert first.returncode == 0, first.stderr[-2000:]
    other = _train_cmd(demos, tmp_path / "run", 8)
    other[other.index("--model.d-model") + 1] = "48"
    out = subprocess.run(other, capture_output=True, text=True)
    assert out.returncode == 2 and "checkpoint of a different model config; fields differ: d_model" in out.stderr
    out = subprocess.run(_train_cmd(demos, tmp_path / "run", 8, "--lr", "1e-3"), capture_output=True, text=True)
    assert out.returncode == 2 and "was trained with steps=4, lr=0.0003; this run has steps=8, lr=0.001" in out.stderr
    out = subprocess.run(_train_cmd(demos, tmp_path / "run", 4, "--max-episodes", "1"), capture_output=True, text=True)
    assert out.returncode == 2 and "max_episodes=None" in out.stderr and "Traceback" not in out.stderr
    other = tmp_path / "other"  # the same demos under another name: same samples, other files
    other.mkdir()
    (other / "Renamed.hdf5").write_bytes((demos / "PickCube.hdf5").read_bytes())
    out = subprocess.run(_train_cmd(other, tmp_path / "run", 4), capture_output=True, text=True)
    assert out.returncode == 2 and "was trained on ['PickCube.hdf5'], this run reads ['Renamed.hdf5']" in out.stderr


def test_eval_runs_a_checkpoint_on_mvbench(tmp_path, demos):
    first = subprocess.run(_train_cmd(demos, tmp_path / "run", 4), capture_output=True, text=True)
    assert first.returncode == 0, first.stderr[-2000:]
    out = _vla(["eval", "--checkpoint", str(tmp_path / "run"), "--groups", "az+45", "--seeds", "0", "--episodes", "1",
                "--size", "32", "--out", str(tmp_path / "e.json")], tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads((tmp_path / "e.json").read_text())
    assert res["tasks"] == ["PickCube"] and res["render_profile"]["name"] == "lowpoly"
    assert res["data_profile"]["name"] == "lowpoly" and res["privileged"] is False and res["cameras"] == ["main"]
    assert "policy: MVBenchPolicy" in out.stdout


def test_ddp_on_two_gloo_ranks_equals_one_process_with_the_same_global_batch(tmp_path, demos):
    """torchrun with 2 CPU processes (gloo, batch 4 each) against one process with batch 8. The
    ViT backbone has no BatchNorm, whose per-rank statistics would differ by design on CPU; chunk 1
    gives every sample one valid target (with chunks, samples near an episode's end have fewer, and
    DDP's mean of per-rank means weighs them differently from one process's mean)."""
    import torch
    from safetensors.torch import load_file

    tiny = TINY[: TINY.index("--model.dropout")]  # no dropout: its masks are drawn per process
    common = ["--model.vision.backbone", "vit_tiny_patch16_224", "--model.vision.stage", "11", "--steps", "6",
              "--save-every", "100", "--log-every", "1", "--warmup", "2", "--threads", "1", "--data", str(demos),
              "--model.chunk", "1", *tiny]  # fmt: skip
    ddp = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "vla.cli", "train",
         *common, "--batch-size", "4", "--out", str(tmp_path / "ddp")], capture_output=True, text=True,
    )  # fmt: skip
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert "ranks hold identical weights: True" in ddp.stdout
    one = _vla(["train", *common, "--batch-size", "8", "--out", str(tmp_path / "one")], tmp_path)
    assert one.returncode == 0, one.stderr[-2000:]
    la, _ = _losses(tmp_path / "ddp")
    lb, _ = _losses(tmp_path / "one")
    assert la.keys() == lb.keys() == set(range(1, 7))
    for s in la:
        assert abs(la[s] - lb[s]) < 1e-5, f"step {s}: {la[s]} (2 ranks) vs {lb[s]} (1 process)"
    a = load_file(str(tmp_path / "ddp/checkpoints/step_00000006/model.safetensors"))
    b = load_file(str(tmp_path / "one/checkpoints/step_00000006/model.safetensors"))
    # the gradients agree to float roundoff (another summation order); Adam's normalised step can
    # turn roundoff in a near-zero gradient into up to lr (3e-4) per step, so weights get 6 x lr
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=6 * 3e-4, rtol=0, msg=k)


def test_a_deadline_stops_at_a_checkpoint_and_the_run_continues_from_it(tmp_path, demos):
    import time

    from vla.pipeline import train_policy

    kw = dict(steps=6, batch_size=4, warmup=2, save_every=100, log_every=1, threads=1, progress=False)
    ckpt, finished = train_policy(tmp_path / "run", [demos], deadline=time.monotonic() - 1, **kw)
    assert not finished and ckpt.name == "step_00000001"  # one step, then a checkpoint (not a multiple of 100)
    ckpt, finished = train_policy(tmp_path / "run", [demos], **kw)
    assert finished and ckpt.name == "step_00000006"
    steps = [json.loads(ln)["step"] for ln in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]  # the second run went on from step 1, not from scratch
    trainer = json.loads((ckpt / "trainer.json").read_text())
    assert trainer["step"] == 6
