import dataclasses
import json

import gymnasium as gym
import h5py
import numpy as np
import pytest

import envs  # noqa: F401
from envs.cameras import WRIST
from envs.mvbench import collect as collect_mod
from envs.mvbench.collect import CollectConfig, _record_episode, collect_task
from envs.mvbench.dataset import DemoFile, write_demo_file
from envs.mvbench.evaluate import EvalConfig, ExpertPolicy, RandomPolicy, evaluate, format_table
from envs.mvbench.views import NovelViews, azimuth_delta, load_split, validate

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
    near, far = 0.05, 5.0
    metric = rng.uniform(0.3, 2.0, (t, h, w, 1))
    zbuf = (1 - near / metric) / (1 - near / far)  # robosuite's normalised depth
    rm = tmp_path / "robomimic.hdf5"
    with h5py.File(rm, "w") as f:
        f.create_group("data").attrs["env_args"] = json.dumps({"near": near, "far": far})
        g = f.create_group("data/demo_3")
        g["actions"] = rng.normal(size=(t, 7))
        g["obs/agentview_image"] = rng.integers(0, 255, (t, h, w, 3), dtype=np.uint8)
        g["obs/agentview_depth"] = zbuf.astype(np.float32)
        g["obs/robot0_eef_pos"] = rng.normal(size=(t, 3))
    ep = DemoFile(rm)[0]
    np.testing.assert_allclose(ep.cameras["agentview"]["depth"], metric[..., 0], rtol=1e-4)
    assert ep.state.shape == (t, 3)


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
