import ctypes.util
import os
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch

import envs
from envs.cameras import CameraSpec
from envs.expert import ScriptedExpert
from envs.profiles import PROFILES
from envs.scene import CUBE_HALF
from worldline.camera import Camera


def _box_sdf(p_local: np.ndarray, half: float) -> np.ndarray:
    q = np.abs(p_local) - half
    return np.linalg.norm(np.maximum(q, 0), axis=-1) + np.minimum(q.max(-1), 0)


@pytest.fixture(scope="module")
def env():
    e = gym.make("MVBench/PickCube-v0", width=96, height=96)
    yield e
    e.close()


def _cam(obs_cam) -> Camera:
    h, w = obs_cam["depth"].shape
    return Camera(
        torch.from_numpy(obs_cam["intrinsics"]).double(), torch.from_numpy(obs_cam["extrinsics"]).double(), w, h
    )


def test_depth_unprojects_onto_cube_surface_in_every_camera(env):
    obs, _ = env.reset(seed=1)
    u = env.unwrapped
    model, data = u.model, u.data
    for cube in ("red_cube", "green_cube"):
        gid = model.geom(f"{cube}_geom").id
        centre, rot = data.geom_xpos[gid], data.geom_xmat[gid].reshape(3, 3)
        seen = 0
        for name, oc in obs["cameras"].items():
            pts = _cam(oc).unproject(torch.from_numpy(oc["depth"]).double()).numpy().reshape(-1, 3)
            valid = oc["depth"].reshape(-1) > 0
            local = (pts - centre) @ rot
            # pixels near the cube that are not the table top
            near = valid & (np.abs(local).max(-1) < CUBE_HALF + 0.01) & (pts[:, 2] > 0.004)
            if near.sum() < 5:
                continue  # the cube is outside this view (e.g. the wrist camera)
            seen += 1
            err = np.abs(_box_sdf(local[near], CUBE_HALF))
            assert err.max() < 0.005, f"{cube} in {name}: surface error up to {err.max():.4f} m"
            away = np.ones(len(pts), bool)
            for other in ("red_cube", "green_cube"):
                away &= np.linalg.norm(pts[:, :2] - u.position(other)[:2], axis=-1) > 0.05
            table = valid & away & (np.abs(pts[:, 2]) < 0.01) & (np.abs(pts[:, 0] - 0.5) < 0.2)
            assert np.abs(pts[table, 2]).max() < 0.005, f"table points off z=0 in {name}"
        assert seen >= 3, f"{cube} seen by only {seen} cameras"


def test_world_point_projects_onto_object_in_all_fixed_views(env):
    obs, _ = env.reset(seed=2)
    u = env.unwrapped
    gid = u.model.geom("red_cube_geom").id
    centre, rot = u.data.geom_xpos[gid], u.data.geom_xmat[gid].reshape(3, 3)
    top = centre + np.array([0, 0, CUBE_HALF])  # centre of the top face, visible from above
    for name in ("front", "left", "right"):
        oc = obs["cameras"][name]
        cam = _cam(oc)
        uv, _ = cam.project(torch.tensor(top)[None])
        col, row = int(uv[0, 0]), int(uv[0, 1])
        assert 0 <= row < 96 and 0 <= col < 96, f"red cube outside {name}"
        r, g, b = oc["rgb"][row, col].astype(int)
        assert r > g + 40 and r > b + 40, f"{name}: pixel ({col}, {row}) is {r, g, b}, not the red cube"
        # the pixel's own depth lifts it back onto the cube's surface (the top face is seen at a
        # grazing angle, so its depth changes ~1 cm per pixel: compare positions, not depths)
        p = cam.unproject(torch.from_numpy(oc["depth"]).double())[row, col].numpy()
        assert abs(_box_sdf((p - centre) @ rot, CUBE_HALF)) < 0.005, f"{name}: lifted pixel {p} is off the cube"


def test_observation_layout_and_types(env):
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert info["instruction"] == env.unwrapped.instruction == "pick up the red cube"
    for oc in obs["cameras"].values():
        assert oc["rgb"].dtype == np.uint8 and oc["rgb"].shape == (96, 96, 3)
        assert oc["depth"].dtype == np.float32 and (oc["depth"] >= 0).all()


@pytest.mark.parametrize("name", ["front", "left", "right"])
def test_images_are_upright(env, name):
    """Put the red cube 20 cm beyond the look-at point, as seen from the camera: in an upright
    image it lies above the middle row. Its projected pixel is red and the row-mirrored pixel is
    not (a bottom-up buffer would show it at the mirrored row); the depth there lifts onto it."""
    obs, _ = env.reset(seed=0)
    u = env.unwrapped
    eye = _cam(obs["cameras"][name]).center.numpy()
    away = np.array([0.5, 0.0]) - eye[:2]
    xy = np.array([0.5, 0.0]) + 0.2 * away / np.linalg.norm(away)
    jnt = u.model.body_jntadr[u.model.body("red_cube").id]
    adr = u.model.jnt_qposadr[jnt]
    u.data.qpos[adr : adr + 7] = [xy[0], xy[1], CUBE_HALF + 0.001, 1, 0, 0, 0]
    obs, *_ = env.step(np.array([0, 0, 0, 0, 0, 0, -1], np.float32))
    top = u.position("red_cube") + np.array([0, 0, CUBE_HALF])
    oc = obs["cameras"][name]
    uv, _ = _cam(oc).project(torch.tensor(top)[None])
    col, row = int(uv[0, 0]), int(uv[0, 1])
    assert row < 96 / 2 - 6, f"{name}: the far cube should project above the middle row, got row {row}"
    red = lambda px: px[0] > px[1] + 40 and px[0] > px[2] + 40  # noqa: E731
    assert red(oc["rgb"][row, col].astype(int)), f"{name}: pixel ({col}, {row}) is not the red cube"
    assert not red(oc["rgb"][96 - 1 - row, col].astype(int)), f"{name}: the mirrored row is red too"
    p = _cam(oc).unproject(torch.from_numpy(oc["depth"]).double())[row, col].numpy()
    assert np.linalg.norm(p - top) < 0.03, f"{name}: depth at the cube pixel does not lift onto the cube"


def test_reset_is_deterministic():
    a = gym.make("MVBench/CubeInBowl-v0", width=48, height=48)
    b = gym.make("MVBench/CubeInBowl-v0", width=48, height=48)
    oa, _ = a.reset(seed=7)
    ob, _ = b.reset(seed=7)
    oc, _ = a.reset(seed=8)
    for n in oa["cameras"]:
        assert oa["cameras"][n]["rgb"].tobytes() == ob["cameras"][n]["rgb"].tobytes()
        assert oa["cameras"][n]["depth"].tobytes() == ob["cameras"][n]["depth"].tobytes()
    assert oa["state"].tobytes() == ob["state"].tobytes()
    assert oa["cameras"]["front"]["rgb"].tobytes() != oc["cameras"]["front"]["rgb"].tobytes()


def test_bad_and_clipped_actions():
    e = gym.make("MVBench/PickCube-v0", obs_mode="state")
    e.reset(seed=0)
    with pytest.raises(ValueError, match="NaN or inf"):
        e.step(np.array([0, 0, np.nan, 0, 0, 0, 0]))
    with pytest.raises(ValueError, match=r"expected shape \(7,\)"):
        e.step(np.zeros(6))
    _, _, _, _, info = e.step(np.array([1.0, 0, 0, 0, 0, 0, 0]))
    assert info["action_clipped"] is True
    _, _, _, _, info = e.step(np.zeros(7))
    assert info["action_clipped"] is False


@pytest.mark.parametrize("env_id", envs.ENV_IDS)
def test_check_env(env_id):
    from gymnasium.utils.env_checker import check_env

    e = gym.make(env_id, width=32, height=32)
    check_env(e.unwrapped, skip_render_check=True)
    e.close()


def test_pointcloud_mode_lies_in_base_frame():
    e = gym.make("MVBench/PickCube-v0", width=64, height=64, obs_mode="pointcloud", num_points=512)
    obs, _ = e.reset(seed=0)
    pts = obs["points"]
    assert pts.shape == (512, 6) and pts.dtype == np.float32
    assert (pts[:, 2] > -0.011).all() and (pts[:, 3:] >= 0).all() and (pts[:, 3:] <= 1).all()
    # most points are on the table top (z ~ 0)
    assert (np.abs(pts[:, 2]) < 0.005).mean() > 0.5


def test_async_vector_env():
    # "spawn": this test process already holds GL contexts, which must not be inherited by fork
    make = lambda: envs and gym.make("MVBench/PickCube-v0", width=32, height=32)  # noqa: E731
    venv = gym.vector.AsyncVectorEnv([make] * 2, context="spawn")
    try:
        obs, info = venv.reset(seed=[0, 1])
        assert obs["cameras"]["front"]["rgb"].shape == (2, 32, 32, 3)
        u0 = obs["cameras"]["front"]["rgb"][0]
        assert not np.array_equal(u0, obs["cameras"]["front"]["rgb"][1])  # different seeds, different layouts
        obs, r, term, trunc, info = venv.step(np.zeros((2, 7), np.float32))
        assert obs["cameras"]["wrist"]["depth"].shape == (2, 32, 32)
        assert list(info["instruction"]) == ["pick up the red cube"] * 2
    finally:
        venv.close()


@pytest.mark.parametrize("task", ["PickCube", "CubeInBowl"])
def test_expert_solves_seeded_episode(task):
    e = gym.make(f"MVBench/{task}-v0", obs_mode="state")
    expert = ScriptedExpert(e)
    obs, info = e.reset(seed=0)
    for _ in range(200):
        obs, r, term, trunc, info = e.step(expert.act(obs, info["instruction"]))
        if term or trunc:
            break
    assert info["is_success"] and r == 1.0


def test_renders_when_mujoco_was_imported_first():
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM")}
    code = (
        "import mujoco, gymnasium as gym, envs\n"
        "e = gym.make('MVBench/PickCube-v0', width=16, height=16)\n"
        "o, _ = e.reset(seed=0)\n"
        "print(int(o['cameras']['front']['depth'].max() > 0))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "1"


def _select_backend(extra_env):
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM")}
    env.update(extra_env)
    code = (
        "import os, envs, gymnasium as gym\n"
        "e = gym.make('MVBench/PickCube-v0', width=16, height=16)\n"
        "o, _ = e.reset(seed=0)\n"
        "print(os.environ['MUJOCO_GL'], int(o['cameras']['front']['depth'].max() > 0))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-1].split(), out.stderr


def test_gl_backend_is_egl_when_egl_works():
    (backend, rendered), _ = _select_backend({})
    assert (backend, rendered) == ("egl", "1")


_NO_OSMESA = pytest.mark.skipif(ctypes.util.find_library("OSMesa") is None, reason="libOSMesa is not installed")


@_NO_OSMESA
def test_gl_backend_falls_back_to_osmesa_when_egl_fails():
    # point libglvnd at a vendor file that does not exist: no EGL implementation can load
    (backend, rendered), stderr = _select_backend({"__EGL_VENDOR_LIBRARY_FILENAMES": "/nonexistent/egl_vendor.json"})
    assert (backend, rendered) == ("osmesa", "1")
    assert "Traceback" not in stderr  # the GL context is freed before interpreter teardown


def test_render_profile_does_not_depend_on_the_machine(monkeypatch):
    """A GPU machine (an NVIDIA device node present) renders exactly what a CPU machine does."""
    cams = (CameraSpec("main", azimuth=30.0),)
    cpu = gym.make("MVBench/PickCube-v0", cameras=cams, width=48, height=48).unwrapped
    real_exists = os.path.exists
    monkeypatch.setattr(os.path, "exists", lambda p: str(p).startswith("/dev/nvidia") or real_exists(p))
    gpu = gym.make("MVBench/PickCube-v0", cameras=cams, width=48, height=48).unwrapped
    for e in (cpu, gpu):
        assert e.render_profile == PROFILES["lowpoly"]
        assert e.model.vis.quality.offsamples == 0 and not e.model.light_castshadow.any()
    a, b = cpu.reset(seed=0)[0], gpu.reset(seed=0)[0]
    np.testing.assert_array_equal(a["cameras"]["main"]["rgb"], b["cameras"]["main"]["rgb"])


def test_render_profiles_differ_and_overrides_are_named():
    cams = (CameraSpec("main", azimuth=30.0),)
    low = gym.make("MVBench/PickCube-v0", cameras=cams, width=48, height=48)
    hifi = gym.make("MVBench/PickCube-v0", cameras=cams, width=48, height=48, render_profile="hifi")
    assert hifi.unwrapped.model.light_castshadow.all() and hifi.unwrapped.model.vis.quality.offsamples == 4
    a, b = low.reset(seed=0)[0]["cameras"]["main"], hifi.reset(seed=0)[0]["cameras"]["main"]
    assert np.abs(a["rgb"].astype(int) - b["rgb"]).mean() > 1.0  # shadows, meshes and MSAA show
    custom = gym.make("MVBench/PickCube-v0", obs_mode="state", shadows=True).unwrapped.render_profile
    assert custom.name == "custom" and custom.shadows and custom.low_poly
    with pytest.raises(ValueError, match="render_profile: unknown profile 'shiny'"):
        gym.make("MVBench/PickCube-v0", render_profile="shiny")


@pytest.mark.parametrize("backend", ["egl", pytest.param("osmesa", marks=_NO_OSMESA)])
def test_rendering_then_building_a_timm_model_does_not_crash(backend):
    """triton (with CUDA builds of torch) bundles LLVM and crashed when loaded after Mesa's."""
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM")}
    env["MUJOCO_GL"] = backend
    code = (
        "import gymnasium as gym, envs\n"
        "e = gym.make('MVBench/PickCube-v0', width=16, height=16)\n"
        "o, _ = e.reset(seed=0)\n"
        "import timm\n"
        "m = timm.create_model('resnet10t', features_only=True, out_indices=(2,))\n"
        "print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), (out.returncode, out.stderr[-1500:])
