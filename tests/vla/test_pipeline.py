import json
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import envs  # noqa: F401
from envs.mvbench import evaluate as evaluate_module
from envs.mvbench.evaluate import RandomPolicy
from envs.mvbench.views import load_split
from vla import pipeline
from vla.pipeline import episodes_per_seed, evaluate_policy, format_summary, summarize

ROOT = Path(__file__).resolve().parents[2]


def test_every_cell_gets_at_least_the_asked_episodes_and_no_more_than_needed():
    split = load_split("default", 16, 16)
    sizes = {g: len(split.cameras(g)) for g in split.groups}
    assert sorted(set(sizes.values())) == [1, 2, 3, 6]  # the groups really differ in size
    for seeds in (1, 3):
        for views in sizes.values():
            n = episodes_per_seed(views, seeds, 50)
            assert n * views * seeds >= 50 > (n - 1) * views * seeds
    assert episodes_per_seed(6, 3, 1) == 1


def _result(tasks, groups, means):
    """A result as evaluate() writes it, with per-task means ``means[task][group]``."""
    table = {t: {g: {"mean": means[t][g], "std": 0.0, "per_seed": [means[t][g]]} for g in groups} for t in tasks}
    return {"tasks": tasks, "groups": groups, "table": table, "episodes_per_cell": {g: 50 for g in groups}}


def test_summary_is_the_mean_and_std_over_training_seeds():
    groups = ["train", "az+15", "az+45"]
    a = _result(["A", "B"], groups, {"A": {"train": 0.8, "az+15": 0.6, "az+45": 0.2},
                                     "B": {"train": 0.6, "az+15": 0.4, "az+45": 0.0}})  # fmt: skip
    b = _result(["A", "B"], groups, {"A": {"train": 1.0, "az+15": 0.6, "az+45": 0.6},
                                     "B": {"train": 0.8, "az+15": 0.4, "az+45": 0.2}})  # fmt: skip
    s = summarize({"4d": [a, b], "none": []})["4d"]
    assert "none" not in summarize({"4d": [a, b], "none": []})
    # seed a: train 0.7, novel groups 0.5 and 0.1 -> 0.3, drop 0.4; seed b: 0.9, 0.5 and 0.4 -> 0.45, drop 0.45
    assert s["groups"]["train"]["mean"] == pytest.approx(0.8)
    assert s["groups"]["train"]["std"] == pytest.approx(statistics.stdev([0.7, 0.9]))  # sample std over seeds
    assert s["groups"]["novel"]["per_seed"] == pytest.approx([0.3, 0.45])
    assert s["groups"]["drop"]["mean"] == pytest.approx(0.425)
    assert s["groups"]["drop"]["std"] == pytest.approx(statistics.stdev([0.4, 0.45]))
    assert s["tasks"]["B"]["az+45"]["per_seed"] == pytest.approx([0.0, 0.2])
    text = format_summary(summarize({"4d": [a, b]}))
    assert "| 4d (n=2) | 80.0 ± 14.1 |" in text and "42.5 ± 3.5" in text
    assert summarize({"4d": [a]})["4d"]["groups"]["train"]["std"] == 0.0  # one seed: no spread to report
    assert "| 4d (n=1) | 70.0 |" in format_summary(summarize({"4d": [a]}))


def test_group_results_are_reused_only_for_the_same_settings(tmp_path, monkeypatch):
    calls = []
    real = evaluate_module.evaluate

    def counting(*a, **kw):
        calls.append(a[2])
        return real(*a, **kw)

    monkeypatch.setattr(evaluate_module, "evaluate", counting)
    kw = dict(groups=["az+45", "az+15"], seeds=[0], min_episodes=2, size=16, progress=False)
    r1 = evaluate_policy(RandomPolicy(0), ["PickCube"], tmp_path, tag={"run": "a"}, **kw)
    assert calls == [["az+45"], ["az+15"]]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["az+15.json", "az+45.json"]
    assert r1["episodes_per_cell"] == {"az+45": 2, "az+15": 2}
    assert len([e for e in r1["episodes"] if e["group"] == "az+45"]) == 2  # 1 view x 1 seed x 2 episodes
    r2 = evaluate_policy(RandomPolicy(0), ["PickCube"], tmp_path, tag={"run": "a"}, **kw)
    assert calls == [["az+45"], ["az+15"]] and r2["table"] == r1["table"]  # reused, not rerun
    evaluate_policy(RandomPolicy(0), ["PickCube"], tmp_path, tag={"run": "b"}, **kw)  # another checkpoint
    assert len(calls) == 4
    evaluate_policy(RandomPolicy(0), ["PickCube"], tmp_path, tag={"run": "b"}, **dict(kw, min_episodes=3))
    assert len(calls) == 6
    evaluate_policy(RandomPolicy(0), ["PickCube"], tmp_path, tag={"run": "b"}, **dict(kw, min_episodes=3, size=24))
    assert len(calls) == 8  # another image size: evaluated again
    assert json.loads((tmp_path / "az+45.json").read_text())["episodes_per_task"] == 3


def test_collect_demos_refuses_a_short_dataset(tmp_path, monkeypatch):
    from envs.mvbench import collect

    real = collect.CollectConfig
    monkeypatch.setattr(collect, "CollectConfig", lambda **kw: real(**kw, max_attempts_factor=1))
    monkeypatch.setattr(collect, "_record_episode", lambda env, seed: (None, False))  # the expert always fails
    with pytest.raises(ValueError, match=r"collect: the expert kept 0 of 2 PickCube demos in 2 attempts"):
        pipeline.collect_demos(["PickCube"], tmp_path, 2, size=16, progress=False)


def _vla(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "vla.cli", *args], capture_output=True, text=True, cwd=cwd)


def test_quickstart_bad_input_is_one_line():
    r = _vla("quickstart", "--tasks", "NoSuchTask")
    assert (
        r.returncode == 2
        and r.stderr.strip().splitlines() == [r.stderr.strip().splitlines()[-1]]
        and "--tasks: unknown ['NoSuchTask']" in r.stderr
    )
    r = _vla("quickstart", "--steps", "0")
    assert r.returncode == 2 and "--steps: expected at least 1, got 0" in r.stderr


@pytest.mark.slow
def test_quickstart_runs_end_to_end_and_resumes(tmp_path):
    out = tmp_path / "qs"
    args = ["quickstart", "--demos", "2", "--steps", "3", "--eval-episodes", "1", "--seeds", "0",
            "--size", "32", "--out", str(out)]  # fmt: skip
    r = _vla(*args)
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["episodes_per_task"] == 6  # one episode in each of the 6 training views
    assert 0.0 <= summary["learned"] <= 1.0 and summary["random"] == 0.0
    assert "training views, 6 episodes per task: cpu-tiny" in r.stdout
    stamp = (out / "eval" / "learned" / "train.json").stat().st_mtime_ns
    r = _vla(*args)  # everything is done: nothing is collected, trained or evaluated again
    assert r.returncode == 0 and (out / "eval" / "learned" / "train.json").stat().st_mtime_ns == stamp
    assert json.loads((out / "summary.json").read_text())["learned"] == summary["learned"]


@pytest.mark.slow
def test_experiment_script_resumes_and_writes_both_tables(tmp_path):
    out = tmp_path / "exp"
    script = ROOT / "tools" / "experiments" / "mvbench_4d_vs_rgb.py"
    args = [sys.executable, str(script), "--tasks", "PickCube", "--history-tasks", "LitBowl", "--policies", "4d",
            "4d-single", "--demos", "1", "--steps", "2", "--batch-size", "4", "--train-seeds", "0",
            "--eval-seeds", "0", "--min-episodes", "1", "--groups", "train", "az+45", "--size", "32",
            "--out", str(out)]  # fmt: skip
    r = subprocess.run(args + ["--budget-minutes", "0"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "run the same command again to continue" in r.stdout and not (out / "runs").exists()
    r = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    s = json.loads((out / "summary.json").read_text())
    assert set(s["standard"]) == {"4d"}  # 4d-single is a history-table policy only
    assert set(s["history"]) == {"4d", "4d-single"}
    assert s["standard"]["4d"]["episodes_per_cell"] == {"train": 6, "az+45": 1}
    assert set(s["standard"]["4d"]["groups"]) == {"train", "az+45", "novel", "drop"}
    md = (out / "summary.md").read_text()
    assert "## Standard tasks (PickCube)" in md and "## History tasks (LitBowl)" in md
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/eval/*.json")}
    assert len(stamps) == 4
    r = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and {p: p.stat().st_mtime_ns for p in out.glob("runs/*/eval/*.json")} == stamps
    assert np.isclose(json.loads((out / "summary.json").read_text())["standard"]["4d"]["groups"]["train"]["mean"],
                      s["standard"]["4d"]["groups"]["train"]["mean"])  # fmt: skip
