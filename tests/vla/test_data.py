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
    for key in ("observation.intrinsics", "observation.extrinsics", "observation.state", "observation.ee_position"):
        torch.testing.assert_close(sample[key], live[key][0])
    # each history frame carries the end-effector position of its own step (the memory's places)
    steps = (t_check + sample["observation.time"]).long()
    torch.testing.assert_close(sample["observation.ee_position"], torch.from_numpy(ep.state[steps, :3]))
    assert sample["observation.ee_position"].std(0).max() > 1e-3  # the arm moved between those frames
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


def test_random_crop_keeps_lifted_points_in_place():
    """A bright dot on a plane 1.2 m in front of the camera: after crop + resize, the dot's pixel
    lifted with the augmented depth and K is the same 3D point as before."""
    from vla.processing import augment_frames
    from vla.spatial import lift_depth

    s = 64
    K = torch.tensor([[70.0, 0, 32], [0, 70.0, 32], [0, 0, 1]])
    w2c = torch.eye(4)
    img = torch.zeros(1, 1, 3, s, s)
    img[..., 40:42, 21:23] = 1.0  # a 2x2 dot centred on pixel corner (22, 41)
    depth = torch.full((1, 1, s, s), 1.2)
    before = lift_depth(depth[0, 0], K, w2c)[0][41, 22]
    for seed in range(5):
        g = torch.Generator().manual_seed(seed)
        im2, d2, K2 = augment_frames(img, depth, K[None, None], w2c[None, None], g, crop_scale=0.75, jitter=0.0)
        assert not torch.equal(K2[0, 0], K)  # the crop moved/scaled the camera
        v, u = divmod(int(im2[0, 0, 0].argmax()), s)
        after = lift_depth(d2[0, 0], K2[0, 0], w2c)[0][v, u]
        pixel = 1.2 / 70 / 0.75  # metres per augmented pixel at that depth
        assert (after - before).norm() < 1.5 * pixel, f"seed {seed}: {after} vs {before}"


def test_augmentation_is_deterministic_per_epoch(tmp_path):
    cam = (CameraSpec("main", azimuth=45.0, elevation=35.0),)
    env = gym.make("MVBench/PickCube-v0", cameras=cam, width=32, height=32, privileged=True)
    ep, _ = _record_episode(env, 3)
    env.close()
    write_demo_file(tmp_path / "d.hdf5", [ep], {})
    cfg = VLAConfig(vision=VisionConfig(image_size=32, grid=2), d_model=32, layers=1, heads=2, ffn=64)
    aug = {"crop_scale": 0.8, "jitter": 0.2}
    a, b = DemoDataset(tmp_path / "d.hdf5", cfg, augment=aug), DemoDataset(tmp_path / "d.hdf5", cfg, augment=aug)
    torch.testing.assert_close(a[5]["observation.images"], b[5]["observation.images"])
    first = a[5]["observation.images"].clone()
    a.set_epoch(1)
    assert not torch.equal(a[5]["observation.images"], first)  # a new epoch, new draws
    plain = DemoDataset(tmp_path / "d.hdf5", cfg)[5]
    assert not torch.equal(plain["observation.images"], first)
