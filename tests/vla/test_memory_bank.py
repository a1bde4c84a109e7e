import numpy as np
import pytest
import torch

from vla.memory_bank import (
    FrameBank,
    MemoryBankSampler,
    RecentSampler,
    SingleFrameSampler,
    UniformSampler,
    make_sampler,
    thumbnail_features,
    window_steps,
)


def _runs(lengths, dim=32, seed=0):
    """Features of a sequence made of static runs (one random vector per run, tiny noise)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(len(lengths), dim, generator=g)
    feats, labels = [], []
    for r, n in enumerate(lengths):
        feats.append(base[r] + 1e-3 * torch.randn(n, dim, generator=g))
        labels += [r] * n
    return torch.cat(feats), labels


def test_memory_bank_picks_distinct_frames_where_uniform_picks_duplicates():
    # a long static stretch, then four short changes: the robot waited, then moved
    feats, labels = _runs([12, 2, 2, 2, 2])
    mbs = MemoryBankSampler(k=5, threshold=0.98).select(feats)
    uni = UniformSampler(k=5).select(feats)
    assert [labels[i] for i in mbs] == [0, 1, 2, 3, 4]  # one frame of every run, oldest first
    assert len({labels[i] for i in uni}) < len(uni)  # uniform spends slots on the static stretch
    assert mbs[-1] == len(feats) - 1 and uni[-1] == len(feats) - 1  # both keep the current frame


def test_memory_bank_keeps_fewer_frames_than_k_when_the_window_is_static():
    feats, _ = _runs([20])
    assert MemoryBankSampler(k=5).select(feats) == [19]


def test_memory_bank_swaps_a_redundant_kept_frame_for_a_more_distinct_older_one():
    # k = 2, window oldest first: X, B, C (current). C = e1, B = 0.8 e1 + 0.6 e2 (cos 0.8 < 0.9, so
    # it is kept first), X = e3 (orthogonal to C). X is more distinct than B was: it takes B's slot.
    e = torch.eye(3)
    c, b, x = e[0], 0.8 * e[0] + 0.6 * e[1], e[2]
    assert MemoryBankSampler(k=2, threshold=0.9).select(torch.stack([x, b, c])) == [0, 2]
    # with B orthogonal too, X is no more distinct than B: the newer frame stays
    assert MemoryBankSampler(k=2, threshold=0.9).select(torch.stack([x, e[1], c])) == [1, 2]
    assert UniformSampler(k=2).select(torch.stack([x, b, c])) == [0, 2]
    assert RecentSampler(k=2).select(torch.stack([x, b, c])) == [1, 2]


def test_samplers_are_deterministic_and_sorted():
    feats, _ = _runs([3, 4, 5, 1, 7], seed=1)
    for name in ("memory_bank", "uniform", "recent", "single"):
        s = make_sampler(name, k=4)
        a, b = s.select(feats), s.select(feats.clone())
        assert a == b == sorted(a) and a[-1] == len(feats) - 1 and len(a) <= 4
    assert RecentSampler(3).select(feats) == [17, 18, 19]
    assert SingleFrameSampler().select(feats) == [19]
    with pytest.raises(ValueError, match="sampler: unknown 'best'"):
        make_sampler("best")


def test_window_steps_and_bank_agree():
    """Training builds windows from step indices; inference from the bank: the same candidates."""
    bank = FrameBank(stride=4, window=5)
    for t in range(30):
        cands = bank.window(t, torch.zeros(3), t)
        assert [c.step for c in cands] == window_steps(t, 5, 4)
    assert window_steps(0, 5, 4) == [0] and window_steps(9, 5, 4) == [0, 4, 8, 9]
    with pytest.raises(ValueError, match="steps to increase"):
        bank.window(3, torch.zeros(3), None)


def test_bank_returns_steps_and_payloads():
    bank = FrameBank(stride=2, window=4)
    feats, _ = _runs([4, 4], dim=8)
    for t in range(8):
        steps, payloads = bank.sample(t, feats[t], f"frame{t}", MemoryBankSampler(k=2, threshold=0.9))
    assert steps == [2, 7] or steps == [4, 7]  # one frame of the first run, and the current one
    assert payloads == [f"frame{s}" for s in steps]


def test_thumbnail_features_ignore_brightness_but_see_layout():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 200, (32, 32, 3), dtype=np.uint8)
    brighter = (img.astype(int) + 40).astype(np.uint8)
    moved = np.roll(img, 8, axis=1)
    f = thumbnail_features(np.stack([img, brighter, moved]))
    cos = torch.nn.functional.cosine_similarity
    assert f.shape == (3, 8 * 8 * 3)
    assert cos(f[0], f[1], dim=0) > 0.999 and cos(f[0], f[2], dim=0) < 0.9


def test_memory_bank_keeps_the_lit_bowl_cue_after_it_is_gone():
    """Scripted LitBowl episodes from a training view: at >= 90% of the decision steps after the
    cue went dark, memory-bank sampling still holds a frame that showed it. Most-recent sampling
    (same k and window) mostly does not; the table for all samplers is tools/bench/memory_bank_cue.py."""
    import gymnasium as gym

    import envs  # noqa: F401
    from envs.expert import ScriptedExpert
    from envs.mvbench.views import load_split
    from envs.tasks import CUE_STEPS

    cam = load_split("default", 64, 64).cameras("train")[0]
    env = gym.make("MVBench/LitBowl-v0", cameras=(cam,), width=64, height=64).unwrapped
    expert = ScriptedExpert(env)
    kept = {"memory_bank": [], "recent": []}
    for seed in range(3):
        obs, _ = env.reset(seed=seed)
        frames = [obs["cameras"][cam.name]["rgb"]]
        for _ in range(env.task.max_steps):
            obs, _, term, _, _ = env.step(expert.act(obs))
            frames.append(obs["cameras"][cam.name]["rgb"])
            if term:
                break
        feats = thumbnail_features(np.stack(frames))
        for t in range(CUE_STEPS, len(frames)):
            cand = window_steps(t)  # the defaults: 20 bank frames, stride 6
            for name in kept:
                kept[name].append(any(cand[i] < CUE_STEPS for i in make_sampler(name, 5).select(feats[cand])))
    env.close()
    assert len(kept["memory_bank"]) > 100
    assert np.mean(kept["memory_bank"]) >= 0.9
    assert np.mean(kept["recent"]) < 0.5
