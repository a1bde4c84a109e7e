"""4D-VLA speed: milliseconds per action, and what memory-bank sampling costs a training sample.

1. Acting: the preset's policy (random weights) acts in an MV-Bench env observation through the
   MV-Bench adapter (preprocessing, history bank, sampling, model), timed per action over an
   episode-length run; with action chunks the model runs once per chunk, so the per-action time is
   the amortised one (the per-prediction time is reported too).
2. Data loading: ``DemoDataset.__getitem__`` over the same demonstrations with memory-bank
   sampling and with uniform sampling (same k and window), in the same run: the ratio is the cost
   of memory-bank sampling per training sample. Features are cached thumbnails and each sample's
   choice is remembered, so the first epoch (where every choice is made) and later epochs are
   reported separately.
3. Batched acting: six episodes (the six training views that ``vla eval`` runs in parallel) acting
   through one batched forward pass per step (``act_batch``) against one policy call per view, in
   the same run: milliseconds per step of all six, and the speed-up.

    python tools/bench/vla_latency.py --preset cpu-tiny --out outputs/bench/vla_latency.json
    python tools/bench/vla_latency.py --preset gpu-base --device cuda   # on a GPU machine
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import platform
import tempfile
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="cpu-tiny")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=200, help="actions timed")
    ap.add_argument("--demos", type=int, default=4, help="LitBowl demos for the data-loading comparison")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--out", default="outputs/bench/vla_latency.json")
    args = ap.parse_args()

    import gymnasium as gym
    import numpy as np
    import torch

    import envs  # noqa: F401
    from envs.mvbench.collect import _record_episode
    from envs.mvbench.dataset import write_demo_file
    from envs.mvbench.views import load_split
    from vla.adapter import MVBenchPolicy
    from vla.configuration import load_preset
    from vla.data import DemoDataset
    from vla.language import InstructionTokenizer
    from vla.modeling import FourDVLAPolicy
    from worldline.io import save_json

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = load_preset(args.preset)
    size = cfg.vision.image_size
    cams = load_split("default", size, size).cameras("train")
    main_cam = dataclasses.replace(cams[0], name="main")
    env = gym.make("MVBench/LitBowl-v0", cameras=(main_cam,), width=size, height=size, privileged=True)

    # 1. acting
    policy = FourDVLAPolicy(cfg, InstructionTokenizer.build(["put the red cube in the bowl that was lit"]).vocab)
    policy = policy.to(args.device).eval()
    agent = MVBenchPolicy(policy)
    obs, info = env.reset(seed=0)
    agent.reset()
    for _ in range(10):  # warm-up
        agent.act(obs, info["instruction"])
    agent.reset()
    per_action, per_prediction = [], []
    for i in range(args.steps):
        queued = len(policy._queue)
        t0 = time.perf_counter()
        agent.act(obs, info["instruction"])
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        per_action.append(dt)
        if queued == 0:
            per_prediction.append(dt)
        obs, *_ = env.step(obs["expert_action"])
        if i % 150 == 149:
            obs, info = env.reset(seed=i)
            agent.reset()

    # 3. batched acting over the six parallel views vs one view at a time (same observations)
    slots = [copy.deepcopy(agent) for _ in range(6)]
    batch_obs = [obs] * len(slots)
    batch_instr = [info["instruction"]] * len(slots)

    def run(batched: bool) -> float:
        for s in slots:
            s.reset()
        t0 = time.perf_counter()
        for _ in range(args.steps // 4):
            if batched:
                agent.act_batch(slots, batch_obs, batch_instr)
            else:
                for s, o, t in zip(slots, batch_obs, batch_instr):
                    s.act(o, t)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
        return (time.perf_counter() - t0) / (args.steps // 4)

    run(True), run(False)  # warm-up
    one_by_one, together = run(False), run(True)

    # 2. data loading: memory bank vs uniform, same demos, same window
    with tempfile.TemporaryDirectory() as tmp:
        eps = []
        seed = 0
        while len(eps) < args.demos:
            ep, ok = _record_episode(env, 1000 + seed)
            seed += 1
            if ok:
                eps.append(ep)
        write_demo_file(os.path.join(tmp, "demos.hdf5"), eps, {})
        timing, first = {}, {}
        for sampler in ("uniform", "memory_bank"):
            ds = DemoDataset(os.path.join(tmp, "demos.hdf5"), dataclasses.replace(cfg, sampler=sampler))
            order = np.random.default_rng(0).permutation(len(ds))
            t0 = time.perf_counter()
            for i in order:  # first epoch: every history is chosen now
                ds[int(i)]
            first[sampler] = (time.perf_counter() - t0) / len(order)
            t0 = time.perf_counter()
            for _ in range(3):  # later epochs: choices are remembered
                for i in order:
                    ds[int(i)]
            timing[sampler] = (time.perf_counter() - t0) / (3 * len(order))
    env.close()

    result = {
        "preset": args.preset, "device": args.device, "threads": args.threads,
        "machine": platform.machine(), "cpus": os.cpu_count(),
        "gpu": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else None,
        "parameters": sum(p.numel() for p in policy.parameters()),
        "chunk": cfg.chunk, "history_k": cfg.history_k,
        "ms_per_action": 1000 * float(np.mean(per_action)),
        "ms_per_prediction": 1000 * float(np.median(per_prediction)),
        "ms_per_step_6_views_one_by_one": 1000 * one_by_one,
        "ms_per_step_6_views_batched": 1000 * together,
        "batched_speedup": one_by_one / together,
        "sample_ms_uniform": 1000 * timing["uniform"],
        "sample_ms_memory_bank": 1000 * timing["memory_bank"],
        "memory_bank_over_uniform": timing["memory_bank"] / timing["uniform"],
        "first_epoch_sample_ms_uniform": 1000 * first["uniform"],
        "first_epoch_sample_ms_memory_bank": 1000 * first["memory_bank"],
        "first_epoch_memory_bank_over_uniform": first["memory_bank"] / first["uniform"],
    }  # fmt: skip
    print(json.dumps(result, indent=2))
    save_json(result, args.out)


if __name__ == "__main__":
    main()
