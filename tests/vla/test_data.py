"""Training samples and inference inputs are built the same way."""

import gymnasium as gym
import numpy as np
import torch

import envs  # noqa: F401
from envs.cameras import CameraSpec
from envs.mvbench.collect import _record_episode
from envs.mvbench.dataset import write_demo_file
from vla.adapter import env_step_input
from vla.configuration import VisionConfig, VLAConfig
from vla.data import DemoDataset
from vla.modeling import FourDVLAPolicy
from vla.processing import prepare_frames
from worldline.camera import Camera


def test_training_sample_equals_what_the_policy_builds_at_inference(tmp_path):
    """Replay a recorded episode into select_action and capture the batch it predicts from at
    step t: the dataset's sample for step t must hold the same frames, offsets, cameras, state."""
    cam = (CameraSpec("main", azimuth=45.0, elevation=35.0),)
    env = gym.make("MVBench/PickCube-v0", cameras=cam, width=48, height=48, privileged=True)
    ep, _ = _record_episode(env, 7)
    env.close()
    write_demo_file(tmp_path / "d.hdf5", [ep], {})
    cfg = VLAConfig(vision=VisionConfig(image_size=32, grid=2), d_model=32, layers=1, heads=2, ffn=64,
                    history_k=4, history_window=6, history_stride=3, sampler="uniform")  # fmt: skip
    data = DemoDataset(tmp_path / "d.hdf5", cfg)
    pol = FourDVLAPolicy(cfg, data.vocab, data.stats).eval()
    seen = []
    real = pol.predict_action_chunk
    pol.predict_action_chunk = lambda b: (seen.append(b), real(b))[1]
    t_check = 25
    for t in range(t_check + 1):
        c = ep.cameras["main"]
        obs = {"cameras": {"main": {k: c[k][t] for k in ("rgb", "depth", "intrinsics", "extrinsics")}},
               "state": ep.state[t]}  # fmt: skip
        pol.select_action(env_step_input(obs, ep.attrs["instruction"], cfg))
    live, sample = seen[t_check], data[t_check]
    assert sample["observation.time"].tolist() == live["observation.time"][0].tolist()
    assert sample["observation.time"][-1] == 0 and sample["observation.time"][0] < 0  # offsets look back
    assert sample["observation.frame_mask"].tolist() == live["observation.frame_mask"][0].tolist()
    torch.testing.assert_close(sample["observation.images"], live["observation.images"][0], atol=1 / 255, rtol=0)
    torch.testing.assert_close(sample["observation.depth"], live["observation.depth"][0], atol=1e-3, rtol=0)
    for key in ("observation.intrinsics", "observation.extrinsics", "observation.state"):
        torch.testing.assert_close(sample[key], live[key][0])
    assert sample["task"] == live["task"][0]
    torch.testing.assert_close(sample["action"][0], torch.from_numpy(ep.actions[t_check]))


def test_prepare_frames_keeps_projections_consistent():
    """Resizing scales K so a world point lands on the same relative image position."""
    K = np.array([[60.0, 0, 50.0], [0, 55.0, 38.0], [0, 0, 1]], np.float32)
    w2c = np.eye(4, dtype=np.float32)
    rgb = np.zeros((2, 80, 100, 3), np.uint8)
    out = prepare_frames(rgb, np.ones((2, 80, 100), np.float32), np.stack([K, K]), np.stack([w2c, w2c]), 40)
    assert out["images"].shape == (2, 3, 40, 40) and out["depth"].shape == (2, 40, 40)
    p = torch.tensor([[0.1, -0.2, 1.3]])
    uv_big, _ = Camera(torch.from_numpy(K), torch.from_numpy(w2c), 100, 80).project(p)
    uv_small, _ = Camera(out["intrinsics"][0], out["extrinsics"][0], 40, 40).project(p)
    torch.testing.assert_close(uv_small[0], uv_big[0] * torch.tensor([40 / 100, 40 / 80]))
