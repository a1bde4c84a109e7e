import dataclasses
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import h5py
import numpy as np
import pytest

import envs  # noqa: F401
from envs.cameras import WRIST
from envs.mvbench import collect as collect_mod
from envs.mvbench import evaluate as evaluate_mod
from envs.mvbench.collect import CollectConfig, _record_episode, collect_task
from envs.mvbench.dataset import DemoFile, write_demo_file
from envs.mvbench.evaluate import EvalConfig, ExpertPolicy, RandomPolicy, evaluate, format_table
from envs.mvbench.seeds import episode_seed
from envs.mvbench.views import NovelViews, azimuth_delta, load_split, validate
from envs.profiles import PROFILES
from envs.tasks import TASKS

ROOT = Path(__file__).resolve().parents[2]

# --- view splits -----------------------------------------------------------------------------


def test_default_split_matches_the_protocol():
    split = load_split("default")
    az = split.train.azimuths
    assert len(az) == 6
    gaps = sorted(azimuth_delta(a, b) for i, a in enumerate(az) for b in az[i + 1 :])
    # 6 views, 54 degrees apart: they cover 270 degrees
    steps = sorted((a - az[0]) % 360 for a in az)
    assert steps[-1] - steps[0] == pytest.approx(270)
    assert min(gaps) == pytest.approx(54)
    deltas = {g.name: {min(azimuth_delta(a, t) for t in az) for a in g.azimuths} for g in split.novel}
    assert deltas["az+15"] == {15.0} and deltas["az+30"] == {30.0} and deltas["az+45"] == {45.0}
    assert {g.elevation for g in split.novel} - {split.train.elevation}  # elevation changes exist


def test_validation_rejects_bad_views():
    split = load_split("default")
    under = dataclasses.replace(split, novel=[NovelViews("low", [0.0], -10.0, 45.0)])
    with pytest.raises(ValueError, match=r"view low_0 .*inside or under the table"):
        validate(under)
    narrow = dataclasses.replace(split, fovy=10.0)
    with pytest.raises(ValueError, match="does not see the whole workspace"):
        validate(narrow)
    wrong = dataclasses.replace(split, novel=[NovelViews("az+15", [20.0], 35.0, 15.0)])
    with pytest.raises(ValueError, match=r"declares delta 15.0 but azimuth 20.0 is 25.0 degrees"):
        validate(wrong)


def test_split_yaml_typo_is_named(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("train: {elevation: 35, azimuths: [0, 90]}\nradiuss: 1.0\n")
    with pytest.raises(ValueError, match=r"unknown key 'radiuss' in .*bad.yaml"):
        load_split(p)


# --- demonstrations --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def recorded():
    split = load_split("default", 48, 48)
    cams = split.cameras("az+15") + (WRIST,)
    env = gym.make("MVBench/PickCube-v0", cameras=cams, width=48, height=48, privileged=True)
    ep, ok = _record_episode(env, seed=5)
    env.close()
    assert ok
    return ep


def test_demo_roundtrip(tmp_path, recorded):
    path = tmp_path / "demo.hdf5"
    write_demo_file(path, [recorded, recorded], {"env_id": "MVBench/PickCube-v0", "task": "PickCube"})
    with DemoFile(path) as f:
        assert len(f) == 2 and f.attrs["task"] == "PickCube"
        back = f[1]
    np.testing.assert_array_equal(back.actions, recorded.actions)
    np.testing.assert_array_equal(back.state, recorded.state)
    assert back.cameras.keys() == recorded.cameras.keys()
    for cam, c in recorded.cameras.items():
        b = back.cameras[cam]
        np.testing.assert_array_equal(b["rgb"], c["rgb"])
        assert np.abs(b["depth"] - c["depth"]).max() <= 0.0005 + 1e-6  # to the millimetre
        np.testing.assert_array_equal(b["depth"] == 0, c["depth"] == 0)
        np.testing.assert_array_equal(b["intrinsics"], c["intrinsics"])
        np.testing.assert_array_equal(b["extrinsics"], c["extrinsics"])
    with h5py.File(path) as h:
        assert h["data/demo_0/obs/az_15_0_depth"].dtype == np.uint16
        assert h["data/demo_0/obs/az_15_0_rgb"].compression == "gzip"


def test_corrupt_and_truncated_files_name_file_and_demo(tmp_path, recorded):
    path = tmp_path / "demo.hdf5"
    write_demo_file(path, [recorded], {})
    truncated = tmp_path / "truncated.hdf5"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    with pytest.raises(ValueError, match="truncated.hdf5"):
        f = DemoFile(truncated)
        f[0]
    broken = tmp_path / "broken.hdf5"
    write_demo_file(broken, [recorded], {})
    with h5py.File(broken, "a") as h:
        del h["data/demo_0/obs/az_15_1_rgb"]
        h["data/demo_0/obs/az_15_1_rgb"] = np.zeros((3, 48, 48, 3), np.uint8)  # wrong length
    with pytest.raises(ValueError, match=r"broken.hdf5: demo 'demo_0' .*az_15_1_rgb has 3 steps"):
        DemoFile(broken)[0]


def test_reads_libero_and_robomimic_layouts(tmp_path):
    t, h, w = 4, 8, 8
    rng = np.random.default_rng(0)
    lib = tmp_path / "libero.hdf5"
    with h5py.File(lib, "w") as f:
        g = f.create_group("data/demo_0")
        g["actions"] = rng.normal(size=(t, 7))
        g["obs/agentview_rgb"] = rng.integers(0, 255, (t, h, w, 3), dtype=np.uint8)
        g["obs/eye_in_hand_rgb"] = rng.integers(0, 255, (t, h, w, 3), dtype=np.uint8)
        g["obs/joint_states"] = rng.normal(size=(t, 7))
        g["obs/gripper_states"] = rng.normal(size=(t, 2))
        g["dones"] = np.array([0, 0, 0, 1], np.uint8)
    ep = DemoFile(lib)[0]
    assert set(ep.cameras) == {"agentview", "eye_in_hand"}
    assert ep.state.shape == (t, 9)  # gripper_states then joint_states, in the fixed order
    rm = tmp_path / "robomimic.hdf5"
    with h5py.File(rm, "w") as f:
        g = f.create_group("data/demo_3")
        g["actions"] = rng.normal(size=(t, 7))
        g["obs/agentview_image"] = rng.integers(0, 255, (t, h, w, 3), dtype=np.uint8)
        g["obs/robot0_eef_pos"] = rng.normal(size=(t, 3))
    ep = DemoFile(rm)[0]
    assert ep.state.shape == (t, 3)


def _opengl_window_depth(z_metric: np.ndarray, near: float, far: float) -> np.ndarray:
    """What an OpenGL depth buffer holds for points at planar distance ``z_metric``: the point
    (0, 0, -z) in eye space through the standard perspective matrix (glFrustum / gluPerspective),
    the perspective divide, and the default depth range [0, 1]."""
    proj = np.array(
        [
            [1, 0, 0, 0],
            [0, 1, 0, 0],
            [0, 0, -(far + near) / (far - near), -2 * far * near / (far - near)],
            [0, 0, -1, 0],
        ]
    )
    eye = np.stack([np.zeros_like(z_metric), np.zeros_like(z_metric), -z_metric, np.ones_like(z_metric)], -1)
    clip = eye @ proj.T
    ndc_z = clip[..., 2] / clip[..., 3]
    return 0.5 * ndc_z + 0.5


def test_robosuite_zbuffer_depth_becomes_metres(tmp_path):
    t, h, w = 3, 6, 5
    rng = np.random.default_rng(1)
    near, far = 0.05, 5.0  # robosuite: model.vis.map.znear/zfar * model.stat.extent
    metric = rng.uniform(0.3, 2.0, (t, h, w, 1))
    path = tmp_path / "robomimic.hdf5"
    with h5py.File(path, "w") as f:
        f.create_group("data").attrs["env_args"] = json.dumps({"near": near, "far": far})
        g = f.create_group("data/demo_0")
        g["actions"] = np.zeros((t, 7))
        g["obs/agentview_image"] = np.zeros((t, h, w, 3), np.uint8)
        g["obs/agentview_depth"] = _opengl_window_depth(metric, near, far).astype(np.float32)
    np.testing.assert_allclose(DemoFile(path)[0].cameras["agentview"]["depth"], metric[..., 0], rtol=1e-4)
    # the same depth without near/far in the file: an error naming what to pass, never silent metres
    bare = tmp_path / "bare.hdf5"
    with h5py.File(bare, "w") as f:
        g = f.create_group("data/demo_0")
        g["actions"] = np.zeros((t, 7))
        g["obs/agentview_depth"] = _opengl_window_depth(metric, near, far).astype(np.float32)
    with pytest.raises(ValueError, match=r"bare.hdf5: demo 'demo_0' .*agentview_depth.*pass near= and far="):
        DemoFile(bare)[0]
    got = DemoFile(bare, near=near, far=far)[0].cameras["agentview"]["depth"]
    np.testing.assert_allclose(got, metric[..., 0], rtol=1e-4)


def test_libero_frames_are_flipped_upright_once(tmp_path):
    """LIBERO stores robosuite's bottom-up frames as rendered (macros_image_convention 'opengl');
    robomimic flips them upright before writing. An upright test image: red top half, blue bottom."""
    upright = np.zeros((2, 8, 6, 3), np.uint8)
    upright[:, :4, :, 0] = 255
    upright[:, 4:, :, 2] = 255
    depth_upright = np.broadcast_to(np.linspace(0.5, 1.5, 8)[None, :, None, None], (2, 8, 6, 1)).astype(np.float32)
    lib = tmp_path / "libero.hdf5"
    with h5py.File(lib, "w") as f:
        f.create_group("data").attrs["macros_image_convention"] = "opengl"
        g = f.create_group("data/demo_0")
        g["actions"] = np.zeros((2, 7))
        g["obs/agentview_rgb"] = upright[:, ::-1]  # as robosuite renders: bottom row first
        g["obs/agentview_depth"] = depth_upright[:, ::-1] * 2.0  # metres, > 1: not a z-buffer
    cam = DemoFile(lib)[0].cameras["agentview"]
    np.testing.assert_array_equal(cam["rgb"], upright)
    np.testing.assert_allclose(cam["depth"], 2.0 * depth_upright[..., 0])
    rm = tmp_path / "robomimic.hdf5"
    with h5py.File(rm, "w") as f:
        g = f.create_group("data/demo_0")
        g["actions"] = np.zeros((2, 7))
        g["obs/agentview_image"] = upright  # robomimic: already upright
    np.testing.assert_array_equal(DemoFile(rm)[0].cameras["agentview"]["rgb"], upright)
    np.testing.assert_array_equal(DemoFile(rm, flip=True)[0].cameras["agentview"]["rgb"], upright[:, ::-1])


def test_demo_file_checks_every_per_step_array(tmp_path, recorded):
    for key, bad in (("rewards", np.zeros(2, np.float32)), ("obs/state", np.zeros((2, 15), np.float32))):
        path = tmp_path / f"bad_{key.replace('/', '_')}.hdf5"
        write_demo_file(path, [recorded], {})
        with h5py.File(path, "a") as h:
            del h[f"data/demo_0/{key}"]
            h[f"data/demo_0/{key}"] = bad
        with pytest.raises(ValueError, match=rf"{path.name}: demo 'demo_0' .*{key}.* has 2 steps but actions has"):
            DemoFile(path)[0]


def test_collection_resumes_after_interruption(tmp_path, monkeypatch):
    cfg = CollectConfig(episodes=2, views="az+45", width=32, height=32, allow_novel_views=True)
    split = load_split("default", 32, 32)
    real = collect_mod._record_episode
    calls = []

    def flaky(env, seed):
        calls.append(seed)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the user stops the run during the second episode
        return real(env, seed)

    monkeypatch.setattr(collect_mod, "_record_episode", flaky)
    with pytest.raises(KeyboardInterrupt):
        collect_task("PickCube", tmp_path, cfg, split=split)
    assert not (tmp_path / "PickCube.hdf5").exists()
    assert len(list((tmp_path / ".parts/PickCube").glob("demo_*.hdf5"))) == 1  # kept the finished one
    monkeypatch.setattr(collect_mod, "_record_episode", real)
    res = collect_task("PickCube", tmp_path, cfg, split=split)
    assert res.complete and res.kept == 2
    with DemoFile(res.path) as f:
        seeds = [f[i].attrs["seed"] for i in range(len(f))]
        assert len(f) == 2 and all(f[i].attrs["success"] for i in range(2))
        assert f.attrs["env_id"] == "MVBench/PickCube-v0" and f.attrs["views"] == "az+45"
    assert seeds[0] == calls[0] and seeds[1] == calls[1]  # continued with the interrupted seed
    assert not (tmp_path / ".parts").exists()


# --- evaluation ------------------------------------------------------------------------------


def test_expert_beats_random_and_results_are_reproducible(tmp_path):
    cfg = EvalConfig(width=32, height=32)
    kw = dict(tasks=["PickCube"], view_groups=["train", "az+45"], episodes_per_task=1, seeds=[0, 1], config=cfg)
    a = evaluate(ExpertPolicy(), out=tmp_path / "a.json", progress=False, **kw)
    b = evaluate(ExpertPolicy(), out=tmp_path / "b.json", progress=False, **kw)
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert a["table"]["PickCube"]["train"]["mean"] >= 0.9
    assert a["table"]["PickCube"]["az+45"]["mean"] >= 0.9
    assert len(a["episodes"]) == 2 * (6 + 1)  # every seed in every view of each group
    r = evaluate(RandomPolicy(0), progress=False, **kw)
    assert r["table"]["PickCube"]["train"]["mean"] <= 0.1
    text = format_table(a)
    assert "train views" in text and "az+45" in text and "100.0 ± 0.0" in text
    assert a["privileged"] is True and "PickCube *" in text and "* privileged" in text
    assert r["privileged"] is False and "*" not in format_table(r)
    assert b["table"] == a["table"]


def test_evaluation_videos(tmp_path):
    import imageio.v2 as imageio

    cfg = EvalConfig(width=32, height=32, wrist=False, video_dir=str(tmp_path / "vid"))
    res = evaluate(ExpertPolicy(), ["PickCube"], ["az+45"], episodes_per_task=1, seeds=[3], config=cfg, progress=False)
    gif = tmp_path / "vid/PickCube/az+45/az_45_0_s3_e0.gif"
    frames = imageio.mimread(gif)
    assert len(frames) == res["episodes"][0]["steps"] + 1 and frames[0].shape[:2] == (32, 32)


def test_evaluate_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown"):
        evaluate(RandomPolicy(), ["NoSuchTask"], progress=False)
    with pytest.raises(ValueError, match=r"view group 'az\+99'"):
        evaluate(RandomPolicy(), ["PickCube"], ["az+99"], progress=False)


# --- integrity: seeds, render profiles, what the policy sees ------------------------------------


def _layout_poses(env, seed):
    env.reset(seed=seed)
    bodies = [env.model.body(o.name).id for o in env.task.objects]
    return env.data.xpos[bodies].copy()


def test_default_evaluation_never_starts_from_a_demo_layout(tmp_path, monkeypatch):
    """The seeds the collector and the evaluator really use (recorded from their code paths, with
    default settings), turned into initial scenes: no evaluation scene equals a demo scene."""
    collected = []
    monkeypatch.setattr(collect_mod, "_record_episode", lambda env, seed: (collected.append(seed), (None, False))[1])
    cfg = CollectConfig(width=16, height=16)  # defaults otherwise: seed 0, 10 episodes, 3x attempts
    collect_task("PickCube", tmp_path, cfg)
    assert len(collected) == cfg.episodes * cfg.max_attempts_factor

    evaluated = []
    real = evaluate_mod.episode_seed
    monkeypatch.setattr(evaluate_mod, "episode_seed", lambda *a: (evaluated.append(a), real(*a))[1])
    defaults = inspect.signature(evaluate).parameters
    evaluate(RandomPolicy(0), ["PickCube"], ["az+45"], config=EvalConfig(width=16, height=16), progress=False)
    seeds = {real(*a) for a in evaluated}
    assert len(seeds) == len(defaults["seeds"].default) * defaults["episodes_per_task"].default

    env = gym.make("MVBench/PickCube-v0", obs_mode="state").unwrapped
    demo = [_layout_poses(env, s) for s in collected]
    for s in seeds:
        poses = _layout_poses(env, s)
        assert not any(np.allclose(poses, d, atol=1e-6) for d in demo), f"eval seed {s} replays a demo layout"


def test_seed_streams_are_disjoint_for_every_task_and_stable_when_tasks_are_added(monkeypatch):
    env_seeds = {}
    for task in TASKS:
        collect = {episode_seed("collect", task, s, e) for s in range(3) for e in range(30)}
        ev = {episode_seed("eval", task, s, e) for s in range(3) for e in range(30)}
        assert not collect & ev and len(collect) == len(ev) == 90
        env_seeds[task] = (min(collect), min(ev))
    monkeypatch.setitem(TASKS, "AAAInsertedFirst", TASKS["PickCube"])  # sorts before every task
    for task in env_seeds:
        collect = {episode_seed("collect", task, s, e) for s in range(3) for e in range(30)}
        ev = {episode_seed("eval", task, s, e) for s in range(3) for e in range(30)}
        assert (min(collect), min(ev)) == env_seeds[task]


def test_profile_and_env_args_recorded_in_demos_and_replayable(tmp_path):
    cfg = CollectConfig(episodes=1, width=24, height=24)
    res = collect_task("PickCube", tmp_path, cfg)
    with DemoFile(res.path) as f:
        assert f.render_profile == PROFILES["lowpoly"].to_dict()
        args = f.attrs["env_args"]
        ep = f[0]
    # robomimic's EnvGym: gym.make(env_name, **env_kwargs) must rebuild the recorded env
    assert args["type"] == 2 and args["env_name"] == "MVBench/PickCube-v0"
    env = gym.make(args["env_name"], **args["env_kwargs"])
    obs, _ = env.reset(seed=ep.attrs["seed"])
    assert set(obs["cameras"]) == set(ep.cameras) == {f"train_{i}" for i in range(6)}
    for cam, c in ep.cameras.items():
        np.testing.assert_array_equal(obs["cameras"][cam]["rgb"], c["rgb"][0])
        np.testing.assert_array_equal(obs["cameras"][cam]["extrinsics"], c["extrinsics"][0])


class _TrainedOnHifi(RandomPolicy):
    render_profile = "hifi"


def test_evaluating_under_another_profile_is_refused_unless_allowed(tmp_path):
    kw = dict(tasks=["PickCube"], view_groups=["az+45"], episodes_per_task=1, seeds=[0], progress=False)
    with pytest.raises(ValueError, match=r"render_profile: evaluating with lowpoly .* rendered with hifi"):
        evaluate(_TrainedOnHifi(0), config=EvalConfig(width=16, height=16), **kw)
    with pytest.raises(ValueError, match="render_profile"):
        evaluate(RandomPolicy(0), config=EvalConfig(width=16, height=16), data_profile="hifi", **kw)
    res = evaluate(_TrainedOnHifi(0), config=EvalConfig(width=16, height=16), allow_profile_mismatch=True,
                   out=tmp_path / "r.json", **kw)  # fmt: skip
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["render_profile"]["name"] == "lowpoly" and saved["data_profile"]["name"] == "hifi"
    assert saved["profile_mismatch_allowed"] is True and res["privileged"] is False


class _Recorder:
    """Reads only what it is given; keeps what it saw in a class-level log (the evaluator gives
    every parallel slot its own deep copy, which shares class attributes)."""

    log: list = []

    def reset(self):
        pass

    def act(self, observation, instruction):
        main = observation["cameras"]["main"]
        _Recorder.log.append(
            (sorted(observation), sorted(observation["cameras"]), main["extrinsics"].tobytes(), main["rgb"].copy())
        )
        return np.zeros(7, np.float32)


def test_policy_sees_the_view_under_test_and_only_it():
    _Recorder.log = []
    kw = dict(tasks=["PickCube"], episodes_per_task=1, seeds=[0], progress=False)
    res = evaluate(_Recorder(), view_groups=["train", "az+45"], config=EvalConfig(width=32, height=32), **kw)
    assert {tuple(r[0]) for r in _Recorder.log} == {("cameras", "state")}  # no expert_action
    assert {tuple(r[1]) for r in _Recorder.log} == {("main",)}  # no wrist camera by default
    first = {}
    for _, _, extr, rgb in _Recorder.log:
        first.setdefault(extr, rgb)
    assert len(first) == 6 + 1, "each view of each group must have its own main camera"
    images = list(first.values())
    assert all(not np.array_equal(a, b) for i, a in enumerate(images) for b in images[i + 1 :])
    assert res["cameras"] == ["main"] and res["privileged"] is False
    _Recorder.log = []
    res = evaluate(_Recorder(), view_groups=["az+45"], config=EvalConfig(width=32, height=32, wrist=True), **kw)
    assert {tuple(r[1]) for r in _Recorder.log} == {("main", "wrist")}
    assert res["cameras"] == ["main", "wrist"] and "cameras: main + wrist" in format_table(res)


class _Steer:
    """Acts from what it sees (a deterministic function of the state), one slot at a time."""

    def reset(self):
        self.t = 0

    def act(self, observation, instruction):
        self.t += 1
        s = observation["state"]
        return np.array([0.02 * np.tanh(10 * (0.55 - s[0])), 0.02 * np.sin(0.1 * self.t), -0.01, 0, 0, 0,
                         1.0 if self.t > 30 else -1.0], np.float32)  # fmt: skip


class _BatchedSteer(_Steer):
    sizes: list = []
    direct = 0

    def act(self, observation, instruction):
        _BatchedSteer.direct += 1
        return super().act(observation, instruction)

    def act_batch(self, slots, observations, instructions):
        _BatchedSteer.sizes.append(len(slots))
        _BatchedSteer.direct -= len(slots)  # calls made here are not the evaluator's
        return np.stack([s.act(o, t) for s, o, t in zip(slots, observations, instructions)])


def test_a_policy_with_act_batch_is_asked_once_per_step_for_all_views():
    kw = dict(tasks=["PickCube"], view_groups=["train"], episodes_per_task=2, seeds=[0], progress=False,
              config=EvalConfig(width=16, height=16))  # fmt: skip
    _BatchedSteer.sizes, _BatchedSteer.direct = [], 0
    batched = evaluate(_BatchedSteer(), **kw)
    one_by_one = evaluate(_Steer(), **kw)
    assert _BatchedSteer.direct == 0, "the evaluator called act() although the policy batches"
    assert _BatchedSteer.sizes[0] == 6 and max(_BatchedSteer.sizes) == 6  # the 6 training views at once
    steps = sum(e["steps"] for e in batched["episodes"])
    assert sum(_BatchedSteer.sizes) == steps  # every step of every view went through act_batch
    assert [(e["view"], e["steps"], e["success"]) for e in batched["episodes"]] == [
        (e["view"], e["steps"], e["success"]) for e in one_by_one["episodes"]
    ]


def test_novel_group_equal_to_training_views_is_rejected():
    split = load_split("default")
    same = dataclasses.replace(split, novel=[NovelViews("el+0", [99.0], 35.0, 0.0)])
    with pytest.raises(ValueError, match=r"novel group 'el\+0' camera 0 .* is a training camera"):
        validate(same)
    flat = dataclasses.replace(split, novel=[NovelViews("el+0", [0.0], 35.0, 0.0)])
    with pytest.raises(ValueError, match="keeps the training elevation"):
        validate(flat)


def test_default_split_ships_as_package_data(tmp_path):
    """After a plain (non-editable) install, from another directory, the split is found."""
    site = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(site)]
    out = subprocess.run(pip + [str(ROOT)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    code = "import envs, envs.mvbench.views as v; print(envs.__file__); print(v.load_split('default').groups)"
    env = dict(os.environ, PYTHONPATH=str(site))
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    where, groups = out.stdout.strip().splitlines()[-2:]
    assert where.startswith(str(site)), f"imported {where}, not the installed copy"
    assert groups == str(load_split("default").groups)


# --- collection settings ----------------------------------------------------------------------


def test_resuming_with_other_settings_is_refused(tmp_path, monkeypatch):
    cfg = CollectConfig(episodes=2, width=24, height=24)
    real = collect_mod._record_episode
    calls = []

    def flaky(env, seed):
        calls.append(seed)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(env, seed)

    monkeypatch.setattr(collect_mod, "_record_episode", flaky)
    with pytest.raises(KeyboardInterrupt):
        collect_task("PickCube", tmp_path, cfg)
    for change in ({"width": 32, "height": 32}, {"seed": 1}, {"render_profile": "hifi"}, {"wrist": True}):
        key = next(iter(change))
        with pytest.raises(ValueError, match=rf"^{key}: the interrupted collection .* used {key}="):
            collect_task("PickCube", tmp_path, dataclasses.replace(cfg, **change))
    assert len(calls) == 2  # nothing was recorded by the refused runs


def test_short_collection_says_so_and_exits_nonzero(tmp_path, monkeypatch, capsys):
    from envs.mvbench import cli

    monkeypatch.setattr(collect_mod, "_record_episode", lambda env, seed: (None, False))  # the expert always fails
    with pytest.raises(SystemExit) as exc:
        cli.main(["collect", "--task", "PickCube", "--episodes", "2", "--size", "16", "--out", str(tmp_path)])
    assert exc.value.code == 1
    captured = capsys.readouterr()
    assert "PickCube: only 0 of 2 demos after 6 attempts (raise --max-attempts-factor" in captured.err
    assert "no demos kept, no file written" in captured.out and not (tmp_path / "PickCube.hdf5").exists()


def test_finished_collection_is_not_overwritten_with_other_settings(tmp_path):
    cfg = CollectConfig(episodes=1, width=24, height=24)
    first = collect_task("PickCube", tmp_path, cfg)
    before = first.path.read_bytes()
    with pytest.raises(ValueError, match=r"^width: .*PickCube.hdf5 was collected with width=24, not 32"):
        collect_task("PickCube", tmp_path, dataclasses.replace(cfg, width=32, height=32))
    with pytest.raises(ValueError, match=r"^episodes: .* already holds 1 demos, fewer than the 3 asked for"):
        collect_task("PickCube", tmp_path, dataclasses.replace(cfg, episodes=3))
    again = collect_task("PickCube", tmp_path, cfg)  # same settings: nothing to do
    assert again.kept == 1 and again.attempts == 0 and first.path.read_bytes() == before
