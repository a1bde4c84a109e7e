"""Spatially-aware memory on its three tasks: Room-Ballet multi-task (fixed eviction strategies
vs the Adaptive Memory Allocator), Short-stay (place-grouped vs time-grouped vs FIFO memory at
the same read budget) and the embodied MuJoCo task (FIFO vs SAT-FIFO vs SAT-PM).

Prints tables and writes JSON (default ``outputs/bench/memory_tasks.json``). Every model is
trained from scratch on CPU with the same seed, steps and batch as its rivals; evaluation
episodes come from a seed stream disjoint from training (``vla.memory.experiments.streams``).

    python tools/bench/memory_tasks.py                   # everything (about 25 minutes on 2 cores)
    python tools/bench/memory_tasks.py --tasks ballet    # one task
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from vla.memory.experiments import (
    ballet_bounds,
    expected_strategy,
    short_stay_sampler,
    train_ballet,
    train_place_task,
)
from vla.memory.read import MemoryConfig
from vla.memory.tasks import N_CLASSES, TASKS
from worldline.io import save_json

TASK_NAMES = ("ballet", "short-stay", "embodied")


def run_ballet(args) -> dict:
    rows = {}
    for strategy in ("fifo", "lifo", "lvfo", "mvfo", "ama"):
        t0 = time.time()
        r = train_ballet(strategy, steps=args.ballet_steps, batch=args.batch, seed=args.seed,
                         eval_episodes=args.eval_episodes)  # fmt: skip
        rows[strategy] = {"accuracy": r.accuracy, "chosen": r.chosen, "final_loss": r.final_loss,
                          "seconds": round(time.time() - t0, 1)}  # fmt: skip
        print(f"  room-ballet {strategy:5s} mean {r.accuracy['mean']:.3f}  ({rows[strategy]['seconds']} s)", flush=True)
    return {
        "settings": {
            "steps": args.ballet_steps,
            "batch": args.batch,
            "eval_episodes_per_task": args.eval_episodes,
            "capacity": "9 of 18 dances (50%)",
            "read": "sat-fifo",
        },  # fmt: skip
        "expected_strategy": {t: expected_strategy(t) for t in TASKS},
        "fixed_strategy_bound": ballet_bounds(np.random.default_rng(np.random.SeedSequence(args.seed).spawn(3)[2])),
        "results": rows,
    }


def run_short_stay(args) -> dict:
    sample = short_stay_sampler(args.grid, args.walk, args.noise)
    rows = {}
    for read in ("fifo", "sat-fifo", "time-pm", "sat-pm"):
        cfg = MemoryConfig(read=read, d_model=64, heads=4, top_k=args.top_k, budget=args.budget,
                           place_embedding="learned", max_places=args.grid**2)  # fmt: skip
        t0 = time.time()
        r = train_place_task(sample, cfg, N_CLASSES, args.grid**2, steps=args.place_steps, batch=32, seed=args.seed,
                             name="short-stay")  # fmt: skip
        r["seconds"] = round(time.time() - t0, 1)
        rows[read] = r
        print(f"  short-stay  {read:8s} accuracy {r['accuracy']:.3f}  ({r['seconds']} s)", flush=True)
    return {
        "settings": {
            "grid": args.grid,
            "walk_steps": args.walk,
            "read_budget_tokens": args.budget,
            "top_k": args.top_k,
            "noise": args.noise,
            "steps": args.place_steps,
        },  # fmt: skip
        "results": rows,
    }


def run_embodied(args) -> dict:
    from vla.memory.embodied import COLOUR_NAMES, GRID, embodied_sampler, render_episodes

    t0 = time.time()
    # training and held-out layouts from two independent child streams of the seed
    train_seed, test_seed = (int(s.generate_state(1)[0]) for s in np.random.SeedSequence(args.seed).spawn(2))
    train = render_episodes(args.embodied_episodes, steps=args.embodied_steps, size=32, seed=train_seed)
    test = render_episodes(args.embodied_eval_episodes, steps=args.embodied_steps, size=32, seed=test_seed)
    render_s = round(time.time() - t0, 1)
    print(f"  embodied: rendered {args.embodied_episodes}+{args.embodied_eval_episodes} episodes in {render_s} s")
    rows = {}
    for read in ("fifo", "sat-fifo", "sat-pm"):
        cfg = MemoryConfig(
            read=read, d_model=64, heads=4, top_k=args.embodied_top_k, place_embedding="learned", max_places=GRID * GRID
        )
        t0 = time.time()
        r = train_place_task(embodied_sampler(train), cfg, len(COLOUR_NAMES), GRID * GRID, steps=args.place_steps,
                             batch=32, seed=args.seed, eval_sample=embodied_sampler(test), name="embodied")  # fmt: skip
        r["seconds"] = round(time.time() - t0, 1)
        rows[read] = r
        print(f"  embodied    {read:8s} accuracy {r['accuracy']:.3f}  ({r['seconds']} s)", flush=True)
    return {
        "settings": {
            "places": GRID * GRID,
            "walk_steps": args.embodied_steps,
            "image": "32x32 RGB-D",
            "top_k": args.embodied_top_k,
            "train_episodes": args.embodied_episodes,
            "eval_episodes": f"{args.embodied_eval_episodes} held-out walks, queried 1000 times (a random "
            "visited place each time)",
            "answer": f"colour of the cube at the place ({len(COLOUR_NAMES)} colours)",
            "render_seconds": render_s,
        },  # fmt: skip
        "results": rows,
    }


def table(out: dict) -> str:
    lines = []
    if "ballet" in out:
        b = out["ballet"]["results"]
        lines += ["Room-Ballet multi-task, capacity 50% (accuracy per query task)",
                  "strategy  " + "  ".join(f"{t:>14s}" for t in TASKS) + "    mean"]  # fmt: skip
        for name, row in b.items():
            acc = row["accuracy"]
            lines.append(f"{name:8s}  " + "  ".join(f"{acc[t]:14.3f}" for t in TASKS) + f"  {acc['mean']:.3f}")
        bound = out["ballet"]["fixed_strategy_bound"]
        lines.append("bound for a fixed strategy (kept: right, else 1/8): "
                     + ", ".join(f"{k} {v:.3f}" for k, v in bound.items()))  # fmt: skip
        if b.get("ama", {}).get("chosen"):
            chosen = b["ama"]["chosen"]
            lines.append("AMA chose  " + ", ".join(f"{t}: {chosen[t]}" for t in TASKS))
    if "short-stay" in out:
        s = out["short-stay"]
        st = s["settings"]
        lines += ["", f"Short-stay, read budget {st['read_budget_tokens']} tokens, noise {st['noise']} (accuracy)"]
        lines += [f"{k:8s}  {v['accuracy']:.3f}" for k, v in s["results"].items()]
    if "embodied" in out:
        lines += ["", "Embodied (MuJoCo), colour at a place (accuracy)"]
        lines += [f"{k:8s}  {v['accuracy']:.3f}" for k, v in out["embodied"]["results"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", nargs="+", default=list(TASK_NAMES), choices=TASK_NAMES)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ballet-steps", type=int, default=1500)
    p.add_argument("--batch", type=int, default=64, help="Room-Ballet batch size")
    p.add_argument("--eval-episodes", type=int, default=500, help="Room-Ballet evaluation episodes per task")
    p.add_argument("--place-steps", type=int, default=1500, help="training steps of each short-stay/embodied model")
    p.add_argument("--grid", type=int, default=4, help="short-stay: rooms per side")
    p.add_argument("--walk", type=int, default=64, help="short-stay: steps of the walk")
    p.add_argument("--budget", type=int, default=8, help="short-stay: tokens one query attends")
    p.add_argument("--top-k", type=int, default=2, help="short-stay: chunks read (hierarchical reads)")
    p.add_argument("--noise", type=float, default=0.15, help="short-stay: pixel noise std of each view (0..1 image)")
    p.add_argument("--embodied-episodes", type=int, default=1500)
    p.add_argument("--embodied-eval-episodes", type=int, default=300)
    p.add_argument("--embodied-steps", type=int, default=12)
    p.add_argument("--embodied-top-k", type=int, default=2, help="embodied: places read by sat-pm")
    p.add_argument("--out", type=Path, default=Path("outputs/bench/memory_tasks.json"))
    args = p.parse_args(argv)
    for name in ("ballet_steps", "batch", "eval_episodes", "place_steps", "grid", "walk", "budget", "top_k",
                 "embodied_episodes", "embodied_eval_episodes", "embodied_steps", "embodied_top_k"):  # fmt: skip
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')}: expected >= 1, got {getattr(args, name)}")
    if not 0 <= args.noise <= 1:
        p.error(f"--noise: expected a std in [0, 1], got {args.noise}")
    if args.budget < args.top_k:
        p.error(f"--budget: expected >= --top-k ({args.top_k}), got {args.budget}")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    cli = argv if argv is not None else sys.argv[1:]
    out: dict = {"machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, python "
                            f"{platform.python_version()}, torch {torch.__version__}",
                 "command": " ".join(["python tools/bench/memory_tasks.py", *cli])}  # fmt: skip
    t0 = time.time()
    runners = {"ballet": run_ballet, "short-stay": run_short_stay, "embodied": run_embodied}
    for name in args.tasks:
        print(f"[{name}]", flush=True)
        out[name] = runners[name](args)
    out["seconds"] = round(time.time() - t0, 1)
    print(table(out))
    save_json(out, args.out)
    print(f"wrote {args.out} ({out['seconds']} s)")
    return out


if __name__ == "__main__":
    main()
