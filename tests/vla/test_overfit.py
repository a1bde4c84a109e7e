"""A tiny 4D-VLA overfits five demonstrations and then replays them in the simulator."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import envs  # noqa: F401
from envs.cameras import CameraSpec
from envs.mvbench.collect import _record_episode
from envs.mvbench.dataset import write_demo_file
from vla.adapter import MVBenchPolicy
from vla.configuration import VisionConfig, VLAConfig
from vla.data import DemoDataset
from vla.modeling import FourDVLAPolicy

SEEDS = [1000, 1001, 1002, 1003, 1004]
CAM = (CameraSpec("main", azimuth=45.0, elevation=35.0),)
SIZE = 32


@pytest.mark.slow
def test_tiny_model_overfits_five_demos_and_replays_them(tmp_path):
    torch.manual_seed(0)
    env = gym.make("MVBench/PickCube-v0", cameras=CAM, width=SIZE, height=SIZE, privileged=True)
    episodes = []
    for seed in SEEDS:
        ep, ok = _record_episode(env, seed)
        assert ok, f"the expert should solve seed {seed}"
        episodes.append(ep)
    env.close()
    write_demo_file(tmp_path / "demos.hdf5", episodes, {})
    cfg = VLAConfig(vision=VisionConfig(image_size=SIZE, grid=4), d_model=64, layers=2, heads=4, ffn=128,
                    history_k=3, history_window=8, history_stride=2)  # fmt: skip
    data = DemoDataset(tmp_path / "demos.hdf5", cfg)
    policy = FourDVLAPolicy(cfg, data.vocab, data.stats)
    steps = 1500
    opt = torch.optim.AdamW(policy.get_optim_params(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps, pct_start=0.1)
    loader = torch.utils.data.DataLoader(data, batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0))
    first, step = None, 0
    while step < steps:
        for batch in loader:
            loss, _ = policy(batch)
            first = loss.item() if first is None else first
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step == steps:
                break
    policy.eval()
    with torch.no_grad():
        losses = [policy(b)[0].item() for b in torch.utils.data.DataLoader(data, batch_size=64)]
    final = float(np.mean(losses))
    assert final < 0.02 and final < first / 100, f"loss {first:.3f} -> {final:.4f}: not overfitted"

    agent = MVBenchPolicy(policy)
    env = gym.make("MVBench/PickCube-v0", cameras=CAM, width=SIZE, height=SIZE)
    solved = []
    for seed in SEEDS:
        obs, info = env.reset(seed=seed)
        agent.reset()
        for _ in range(env.spec.max_episode_steps):
            obs, _, term, trunc, info = env.step(agent.act(obs, info["instruction"]))
            if term or trunc:
                break
        solved.append(bool(info["is_success"]))
    env.close()
    # five demos leave the policy no margin: one step of gripper timing off the demo and a replay
    # can drift away (measured 3-4 of 5 at this size); at least 3 must succeed
    assert sum(solved) >= 3, f"replayed demos solved: {solved}"
