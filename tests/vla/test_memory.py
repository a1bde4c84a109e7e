"""Spatially-aware memory: eviction strategies, reads, embeddings, the AMA, the task generators."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vla.memory.ama import AdaptiveMemoryAllocator
from vla.memory.embeddings import PlaceEmbedding
from vla.memory.eviction import STRATEGIES, EventMemory, evict
from vla.memory.read import MemoryConfig, SpatialMemory
from vla.memory.tasks import (
    CAPACITY,
    N_DANCERS,
    OCCUPANCY,
    TASK_STRATEGY,
    TRAJECTORIES,
    ballet_batch,
    ballet_episode,
    random_walk,
    short_stay_batch,
)

# -- eviction -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "places, capacity, expected",
    [
        # worked by hand in the comments below
        ([1, 0, 0, 0, 2, 3], 4,
         {"fifo": [2, 3, 4, 5], "lifo": [0, 1, 2, 3], "lvfo": [1, 2, 3, 5], "mvfo": [0, 3, 4, 5]}),
        ([0, 0, 1, 2, 0, 1, 3, 0, 2], 4,
         {"fifo": [5, 6, 7, 8], "lifo": [0, 1, 2, 3], "lvfo": [1, 4, 7, 8], "mvfo": [5, 6, 7, 8]}),
    ],
)  # fmt: skip
def test_eviction_hand_built(places, capacity, expected):
    # Sequence 1 (capacity 4), memory after 4 events: e0@p1 e1@p0 e2@p0 e3@p0.
    #   LVFO: e4@p2 arrives -> least-occupied place p1 -> evict e0; e5@p3 -> least is p2 (1, e4) -> evict e4.
    #   MVFO: e4 -> most-occupied p0 -> evict its oldest e1; e5 -> p0 still most (e2, e3) -> evict e2.
    # Sequence 2: LVFO ties (p1 and p2 hold one each) go to the place whose oldest event is oldest.
    for strategy in STRATEGIES:
        assert evict(strategy, places, capacity) == expected[strategy], strategy


def test_eviction_reports_what_left():
    m = EventMemory(2, "lifo")
    assert [m.add(p) for p in (0, 1, 2)] == [None, None, 2]  # LIFO refuses the newcomer
    m = EventMemory(2, "fifo")
    assert [m.add(p) for p in (0, 1, 2)] == [None, None, 0]
    assert m.kept == [1, 2] and m.places == [1, 2]


def test_eviction_bad_input():
    with pytest.raises(ValueError, match="strategy: unknown 'lru'"):
        EventMemory(3, "lru")
    with pytest.raises(ValueError, match="capacity: expected a positive int, got 0"):
        evict("fifo", [0, 1], 0)


def test_mvfo_keeps_newest_of_every_place_fifo_newest_lifo_oldest():
    rng = np.random.default_rng(3)
    for _ in range(200):
        places = rng.integers(0, 5, 30)
        kept = evict("mvfo", places, 6)
        for p in np.unique(places):  # 5 places < capacity 6: the newest visit of each place stays
            assert np.flatnonzero(places == p)[-1] in kept
        assert evict("fifo", places, 6) == list(range(24, 30))
        assert evict("lifo", places, 6) == list(range(6))


# -- Room-Ballet generator ----------------------------------------------------------------------


def test_ballet_layout_structure():
    rng = np.random.default_rng(0)
    for _ in range(50):
        e = ballet_episode(rng)
        counts = sorted(np.bincount(e["rooms"], minlength=8).tolist(), reverse=True)
        assert counts == list(OCCUPANCY)
        assert len(set(e["colours"].tolist())) == N_DANCERS  # every dancer its own colour
        for room in range(8):  # classes never repeat within a room
            labels = e["labels"][e["rooms"] == room]
            assert len(set(labels.tolist())) == len(labels)
        big = np.bincount(e["rooms"]).argmax()
        assert (e["rooms"][:8] == big).sum() >= 4


def test_each_ballet_task_is_answered_by_exactly_its_strategy():
    """The queried dancer is always kept by the task's strategy; each other strategy misses it
    often (so no fixed strategy can be right on all four tasks)."""
    b = ballet_batch(np.random.default_rng(1), 800)
    kept = np.array([[b.target[i] in b.kept[i, s] for s in range(4)] for i in range(800)])
    for task, strategy in enumerate(TASK_STRATEGY):
        rate = kept[b.task == task].mean(0)
        assert rate[STRATEGIES.index(strategy)] == 1.0
        others = np.delete(rate, STRATEGIES.index(strategy))
        assert others.max() < 0.9, (task, rate)
    # the query frame is the dancer's last dance frame, drawn where the trajectory ends
    i = 0
    label = b.labels[i, b.target[i]]
    assert np.array_equal(b.query[i], b.frames[i, b.target[i], -1])
    dx, dy = TRAJECTORIES[label, -1]
    ys, xs = np.nonzero(b.query[i].sum(0))
    assert (xs.min() - 4, ys.min() - 4) == (dx, dy)  # sprite's top-left starts at (4, 4) in the 12-px crop


def test_dance_classes_differ_in_motion_but_not_in_their_last_frame():
    paths = {tuple(map(tuple, t)) for t in TRAJECTORIES}
    assert len(paths) == len(TRAJECTORIES)
    # the query shows a dancer's last frame: every dance ends where it began, so the frame says who
    # danced, never which dance
    assert (TRAJECTORIES[:, -1] == 0).all()


def test_short_stay_walk_and_queries():
    rng = np.random.default_rng(0)
    walk = random_walk(rng, 4, 500)
    x, y = walk % 4, walk // 4
    assert np.all(np.abs(np.diff(x)) + np.abs(np.diff(y)) <= 1)  # one move (or a bump) per step
    b = short_stay_batch(rng, 16, grid=4, steps=40)
    for i in range(16):
        assert b.query[i] in b.places[i]  # the asked-about room was visited


# -- embeddings ---------------------------------------------------------------------------------


def test_place_embeddings():
    d = 16
    sin = PlaceEmbedding(d, "sinusoidal")
    ids = torch.tensor([[0, 3, 3]])
    out = sin(ids)
    assert out.shape == (1, 3, d) and torch.allclose(out[0, 1], out[0, 2]) and not torch.allclose(out[0, 0], out[0, 1])
    learned = PlaceEmbedding(d, "learned", max_places=4)
    assert torch.equal(learned(torch.tensor([2])), learned.table.weight[2:3])
    with pytest.raises(ValueError, match="id 4 >= max_places=4"):
        learned(torch.tensor([4]))
    with pytest.raises(ValueError, match="integer place ids"):
        sin(torch.zeros(2, 3))
    four = PlaceEmbedding(d, "fourier", low=(0, 0, 0), high=(1, 1, 1))
    with pytest.raises(ValueError, match="positions"):
        four(torch.tensor([1, 2]))
    p = torch.tensor([[0.5, 0.5, 0.5], [0.5001, 0.5, 0.5], [0.9, 0.1, 0.5]])
    e = four(p)
    assert (e[0] - e[1]).norm() < 0.05 * (e[0] - e[2]).norm()  # near places, near codes


# -- reads --------------------------------------------------------------------------------------


def _inputs(b=3, m=10, q=2, d=32, places=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "query": torch.randn(b, q, d, generator=g),
        "memory": torch.randn(b, m, d, generator=g),
        "time": torch.arange(m).float().expand(b, m),
        "place": torch.randint(0, places, (b, m), generator=g),
        "mask": torch.rand(b, m, generator=g) > 0.2,
    }


def test_flat_read_equals_multihead_attention():
    """The flat read layer against torch's nn.MultiheadAttention with the same weights."""
    d, h = 32, 4
    torch.manual_seed(0)
    mem = SpatialMemory(MemoryConfig(read="fifo", d_model=d, heads=h, time_embedding=False))
    layer = mem.layers[0]
    mha = torch.nn.MultiheadAttention(d, h, batch_first=True)
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.cat([layer.q.weight, layer.k.weight, layer.v.weight]))
        mha.in_proj_bias.copy_(torch.cat([layer.q.bias, layer.k.bias, layer.v.bias]))
        mha.out_proj.weight.copy_(layer.out.weight)
        mha.out_proj.bias.copy_(layer.out.bias)
    x = _inputs(d=d)
    for i in range(3):
        x["mask"][i, i] = True  # at least one real token per sample
    qn, mn = layer.norm_q(x["query"]), layer.norm_m(x["memory"])
    att, _ = mha(qn, mn, mn, key_padding_mask=~x["mask"])
    want = x["query"] + att
    want = mem.norm(want + layer.ffn(layer.norm_f(want)))
    got = mem(x["query"], x["memory"], x["time"], mask=x["mask"])
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_sat_pm_with_one_chunk_equals_flat_attention():
    d = 32
    torch.manual_seed(0)
    pm = SpatialMemory(MemoryConfig(read="sat-pm", d_model=d, heads=4, top_k=3, layers=2, place_embedding="learned"))
    flat = SpatialMemory(MemoryConfig(read="sat-fifo", d_model=d, heads=4, layers=2, place_embedding="learned"))
    missing, unexpected = flat.load_state_dict(pm.state_dict(), strict=False)
    assert not missing and all("summary" in k for k in unexpected)
    x = _inputs(d=d)
    x["place"] = torch.zeros_like(x["place"])  # one place: one chunk holds everything
    torch.testing.assert_close(pm(**x), flat(**x), atol=1e-5, rtol=1e-5)
    x["place"][:, ::2] = 1  # two chunks: the hierarchical read now differs
    assert not torch.allclose(pm(**x), flat(**x), atol=1e-3)


def _naive_hierarchical(layer, query, memory, mask, chunk_of, top_k):
    """Per query and per chunk, written with explicit loops (oracle for the vectorised read)."""
    b, nq, d = query.shape
    h = layer.config.heads
    qn, mn = layer.norm_q(query), layer.norm_m(memory)
    out = torch.zeros(b, nq, d)
    for i in range(b):
        chunks = sorted({int(c) for c, m in zip(chunk_of[i], mask[i]) if m})
        summaries = torch.stack([mn[i][(chunk_of[i] == c) & mask[i]].mean(0) for c in chunks])
        for j in range(nq):
            s = (layer.summary_q(qn[i, j]) @ layer.summary_k(summaries).T) / math.sqrt(d)
            top = torch.topk(s, min(top_k, len(chunks)))
            w = top.values.softmax(0)
            acc = torch.zeros(d)
            for weight, ci in zip(w, top.indices):
                sel = (chunk_of[i] == chunks[ci]) & mask[i]
                heads = []
                for hh in range(h):
                    sl = slice(hh * d // h, (hh + 1) * d // h)
                    qv = layer.q(qn[i, j])[sl]
                    kv, vv = layer.k(mn[i][sel])[:, sl], layer.v(mn[i][sel])[:, sl]
                    heads.append(((kv @ qv) / math.sqrt(d // h)).softmax(0) @ vv)
                acc = acc + weight * torch.cat(heads)
            out[i, j] = query[i, j] + layer.out(acc)
    return out + layer.ffn(layer.norm_f(out))


def test_sat_pm_read_matches_a_loop_oracle():
    d = 16
    torch.manual_seed(1)
    mem = SpatialMemory(MemoryConfig(read="sat-pm", d_model=d, heads=2, top_k=2, time_embedding=False,
                                     place_embedding="learned"))  # fmt: skip
    x = _inputs(d=d, m=12, places=5)
    x["mask"][:, 0] = True
    embedded = mem.embed(x["memory"], x["time"], x["place"])
    got = mem.layers[0](x["query"], embedded, x["mask"], x["place"], mem.config.max_places)
    want = _naive_hierarchical(mem.layers[0], x["query"], embedded, x["mask"], x["place"], 2)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    # the chunks read are the places with the highest summary scores, and they are real places
    chosen = mem.layers[0].last_chunks
    for i in range(3):
        assert set(chosen[i].flatten().tolist()) <= set(x["place"][i][x["mask"][i]].tolist())


def test_time_pm_chunks_consecutive_steps():
    """HCAM's time chunks: runs of chunk_size real tokens, oldest first, read like place chunks."""
    d = 16
    torch.manual_seed(0)
    mem = SpatialMemory(MemoryConfig(read="time-pm", d_model=d, heads=2, top_k=2, chunk_size=4))
    x = _inputs(d=d, m=12)
    x["mask"][:, 0] = True
    chunk_of, n, read_mask = mem._chunks(x["place"], x["mask"], None)  # place ids do not decide the chunks
    for i in range(3):
        real = torch.nonzero(x["mask"][i])[:, 0]
        assert chunk_of[i, real].tolist() == [r // 4 for r in range(len(real))]
        assert (chunk_of[i][~x["mask"][i]] == -1).all()
    embedded = mem.embed(x["memory"], x["time"], x["place"])  # places are embedded (SAT), not chunked on
    got = mem(x["query"], x["memory"], x["time"], x["place"], mask=x["mask"])
    want = _naive_hierarchical(mem.layers[0], x["query"], embedded, read_mask, chunk_of, 2)
    torch.testing.assert_close(got, mem.norm(want), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("read", ["fifo", "sat-pm"])
def test_read_budget_limits_tokens_attended(read):
    d = 16
    torch.manual_seed(0)
    cfg = MemoryConfig(read=read, d_model=d, heads=2, top_k=1, budget=3, place_embedding="learned")
    mem = SpatialMemory(cfg)
    x = _inputs(b=1, d=d, m=10, q=1)
    x["mask"][:] = True
    x["place"][:] = 2  # one place: sat-pm reads its newest 3 tokens, fifo the newest 3 overall
    base = mem(**x)
    y = dict(x, memory=x["memory"].clone())
    y["memory"][0, :7] += 3 * torch.randn(7, d)  # older than the budget
    torch.testing.assert_close(mem(**y), base, atol=1e-6, rtol=1e-6)
    y["memory"][0, 8] += 3 * torch.randn(d)  # inside the budget
    assert not torch.allclose(mem(**y), base, atol=1e-3)


def test_read_budget_per_place_with_several_places():
    """sat-pm with budget 4 and top_k 2 reads at most the newest 2 tokens of each place."""
    d = 16
    torch.manual_seed(0)
    mem = SpatialMemory(MemoryConfig(read="sat-pm", d_model=d, heads=2, top_k=2, budget=4, place_embedding="learned"))
    place = torch.tensor([[0, 1, 0, 2, 1, 0, 2, 1, 0]])
    mask = torch.ones(1, 9, dtype=torch.bool)
    chunk_of, n, read_mask = mem._chunks(place, mask, None)
    assert read_mask[0].tolist() == [False, False, False, True, True, True, True, True, True]  # newest 2 per place
    assert n == 3 and chunk_of[0].tolist() == [-1, -1, -1, 2, 1, 0, 2, 1, 0]  # places numbered 0..2
    x = {"query": torch.randn(1, 1, d), "memory": torch.randn(1, 9, d), "time": torch.arange(9.0)[None],
         "place": place, "mask": mask}  # fmt: skip
    base = mem(**x)
    y = dict(x, memory=x["memory"].clone())
    y["memory"][0, :3] += 3 * torch.randn(3, d)  # older than each place's newest two
    torch.testing.assert_close(mem(**y), base, atol=1e-6, rtol=1e-6)


def test_chunks_are_numbered_per_sample_not_by_vocabulary():
    """A huge place vocabulary costs nothing: chunk ids run over the places present."""
    mem = SpatialMemory(
        MemoryConfig(read="sat-pm", d_model=16, heads=2, max_places=10**6, place_embedding="sinusoidal")
    )
    place = torch.tensor([[999_999, 5, 5, 70_000], [3, 3, 3, 3]])
    mask = torch.tensor([[True, True, True, True], [True, True, False, True]])
    chunk_of, n, _ = mem._chunks(place, mask, None)
    assert n == 3 and chunk_of.tolist() == [[2, 0, 0, 1], [0, 0, -1, 0]]
    out = mem(torch.randn(2, 1, 16), torch.randn(2, 4, 16), torch.zeros(2, 4), place, mask)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("read", ["fifo", "sat-fifo", "sat-pm", "time-pm"])
def test_empty_memory_reads_nothing_and_stays_finite(read):
    """A sample with no real token (episode start) reads zeros: finite outputs and gradients."""
    d = 16
    mem = SpatialMemory(MemoryConfig(read=read, d_model=d, heads=2, top_k=3, place_embedding="learned", budget=6))
    x = _inputs(d=d, m=5)
    x["mask"][0] = False  # sample 0: nothing in memory
    x["place"][0] = -1  # padding may carry any id
    x["memory"].requires_grad_(True)
    out = mem(**x)
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert torch.isfinite(x["memory"].grad).all() and (x["memory"].grad[0] == 0).all()
    assert all(torch.isfinite(p.grad).all() for p in mem.parameters() if p.grad is not None)
    layer = mem.layers[0]  # an empty read leaves the query path alone
    q = x["query"][:1] + layer.out.bias
    torch.testing.assert_close(out[:1], mem.norm(q + layer.ffn(layer.norm_f(q))), atol=1e-5, rtol=1e-5)


def test_fourier_places_group_by_id_and_embed_by_position():
    """positions [B, M, 3] feed the fourier embedding, group ids the chunks; moving an event within
    its place changes its code (and the read), swapping its group id changes the chunks."""
    d = 16
    torch.manual_seed(0)
    mem = SpatialMemory(MemoryConfig(read="sat-pm", d_model=d, heads=2, top_k=2, place_embedding="fourier",
                                     place_low=[0, 0, 0], place_high=[1, 1, 1]))  # fmt: skip
    pos = torch.rand(2, 6, 3)
    group = torch.tensor([[0, 0, 1, 1, 2, 2]] * 2)
    x = {"query": torch.randn(2, 1, d), "memory": torch.randn(2, 6, d), "time": torch.arange(6.0).expand(2, 6)}
    base = mem(**x, place=pos, group=group)
    moved = pos.clone()
    moved[:, 0] += 0.2
    assert not torch.allclose(mem(**x, place=moved, group=group), base, atol=1e-4)
    with pytest.raises(ValueError, match="sat-pm chunks the memory by place id"):
        mem(**x, place=pos)  # positions but no group ids


def test_memory_bad_input():
    with pytest.raises(ValueError, match="read: expected one of"):
        MemoryConfig(read="lru")
    with pytest.raises(ValueError, match="d_model: 30 must be divisible by heads=4"):
        MemoryConfig(d_model=30)
    mem = SpatialMemory(MemoryConfig(read="sat-pm", d_model=16, heads=2, max_places=4, place_embedding="sinusoidal"))
    x = _inputs(d=16)
    with pytest.raises(ValueError, match=r"place ids must be in \[0, 4\)"):
        mem(**dict(x, place=x["place"] + 4))
    with pytest.raises(ValueError, match="place: read='sat-pm' embeds places"):
        mem(**dict(x, place=None))
    with pytest.raises(ValueError, match="memory/query: expected"):
        mem(**dict(x, memory=x["memory"][..., :8]))
    with pytest.raises(ValueError, match=r"place: expected shape \[3, 10\], got \[3, 9\]"):
        mem(**dict(x, place=x["place"][:, :9]))
    with pytest.raises(ValueError, match="mask: expected bool"):
        mem(**dict(x, mask=x["mask"].float()))
    with pytest.raises(ValueError, match="n_tasks: expected >= 1"):
        AdaptiveMemoryAllocator(0, STRATEGIES)


def test_memory_gradients_reach_every_part():
    mem = SpatialMemory(MemoryConfig(read="sat-pm", d_model=16, heads=2, top_k=2, place_embedding="learned"))
    x = _inputs(d=16)
    x["memory"].requires_grad_(True)
    mem(**x).square().sum().backward()
    assert x["memory"].grad.abs().sum() > 0
    for name, p in mem.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


# -- AMA ----------------------------------------------------------------------------------------


def test_ama_learns_the_right_arm_on_a_toy_bandit():
    """Known expected rewards per (task, arm); the greedy policy must end on each task's best arm."""
    rewards = torch.tensor([[0.1, 0.9, 0.2, 0.3], [0.8, 0.1, 0.2, 0.1], [0.2, 0.3, 0.1, 0.7]])
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    ama = AdaptiveMemoryAllocator(3, STRATEGIES, anneal_steps=300)
    opt = torch.optim.Adam(ama.parameters(), lr=1e-2)
    assert ama.epsilon(0) == 1.0 and ama.epsilon(150) == pytest.approx(0.6) and ama.epsilon(10_000) == 0.2
    for step in range(600):
        task = torch.arange(48) % 3
        arm = ama.choose(task, step, g)
        noisy = rewards[task, arm] + 0.1 * torch.randn(48, generator=g)
        loss = ama.loss(task, arm, -noisy)  # the sample "loss" is minus the reward
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert ama.policy() == {0: "lifo", 1: "fifo", 2: "mvfo"}
    torch.testing.assert_close(ama.values(torch.arange(3)), rewards, atol=0.08, rtol=0)
    greedy = ama.choose(torch.arange(3))  # evaluation: no exploration
    assert greedy.tolist() == [1, 0, 3]


def test_ama_explores_at_epsilon():
    ama = AdaptiveMemoryAllocator(2, STRATEGIES, anneal_steps=100)
    g = torch.Generator().manual_seed(0)
    task = torch.zeros(4000, dtype=torch.long)
    greedy = ama.choose(task[:1]).item()
    frac = (ama.choose(task, 10_000, g) != greedy).float().mean().item()  # eps 0.2, 3/4 of random picks differ
    assert frac == pytest.approx(0.2 * 0.75, abs=0.02)
    with pytest.raises(ValueError, match=r"task: expected integer ids in \[0, 2\)"):
        ama.values(torch.tensor([2]))


def test_ama_loss_is_weighted_mse_and_detaches_the_reward():
    ama = AdaptiveMemoryAllocator(2, STRATEGIES, q_weight=0.1)
    task, arm = torch.tensor([0, 1]), torch.tensor([2, 3])
    sample_loss = torch.tensor([1.0, 2.0], requires_grad=True)
    q = ama.values(task).gather(-1, arm[:, None])[:, 0]
    want = 0.1 * F.mse_loss(q, -sample_loss.detach())
    got = ama.loss(task, arm, sample_loss)
    torch.testing.assert_close(got, want)
    got.backward()
    assert sample_loss.grad is None  # the reward is detached


def test_capacity_is_half():
    assert CAPACITY * 2 == N_DANCERS


# -- places -------------------------------------------------------------------------------------


def test_cell_ids_row_major_outside_and_clamped():
    from vla.memory.places import cell_ids

    origin, cell = (0.0, -0.6, -0.1), 0.2
    pts = torch.tensor([[0.05, -0.55, 0.0], [0.25, -0.55, 0.0], [0.05, -0.35, 0.0], [0.05, -0.55, 0.15],
                        [-0.05, 0.0, 0.0], [0.95, 0.55, 0.55]])  # fmt: skip
    grid = (5, 6, 4)
    # x fastest: id = ix + 5 * iy + 30 * iz
    assert cell_ids(pts, origin, cell, grid).tolist() == [0, 1, 5, 30, -1, 4 + 5 * 5 + 30 * 3]
    assert cell_ids(pts, origin, cell, grid, clamp=True)[4].item() == 0 + 5 * 3  # x clamped to 0, y cell 3
    assert cell_ids(pts, origin, cell, (5, 6)).tolist()[:4] == [0, 1, 5, 0]  # xy grid: height ignored
    with pytest.raises(ValueError, match="grid: expected 2 or 3 positive cell counts"):
        cell_ids(pts, origin, cell, (5,))


def test_embodied_places_come_from_the_agent_camera_position():
    """Render two short walks: the place computed from each frame's camera centre (worldline) is
    the place the walk put the agent at, and the frame looks down on the cube of that place."""
    from vla.memory.embodied import CELL, HOVER, place_centre, place_of, render_episodes

    eps = render_episodes(2, steps=5, size=24, seed=3, progress=False)
    for e in range(2):
        for t in range(5):
            p = eps.places[e, t]
            assert np.abs(eps.positions[e, t, :2] - place_centre(p)[:2]).max() <= 0.03 + 1e-6  # jitter only
            assert eps.positions[e, t, 2] == pytest.approx(HOVER, abs=1e-5)
            centre_depth = eps.depth[e, t, 10:14, 10:14].astype(float) / 1000
            assert centre_depth.min() > HOVER - 0.045 and centre_depth.max() < HOVER + 0.001  # cube top or table
    assert place_of(np.array([place_centre(4)[0] + CELL / 2 + 0.01, 0.0, 0.3])).item() == 5  # next cell in x
    assert place_of(np.array([-1.0, 0.0, 0.3])).item() == -1


def test_no_fixed_strategy_can_do_well_on_all_four_tasks():
    """The generator's promise: a fixed strategy is right at best where its memory holds the
    dancer (1/8 elsewhere), which caps it well below what a per-task choice reaches (1.0)."""
    from vla.memory.experiments import ballet_bounds

    bounds = ballet_bounds(np.random.default_rng(5), 800)
    assert set(bounds) == set(STRATEGIES)
    assert all(0.5 < v < 0.66 for v in bounds.values()), bounds


@pytest.mark.slow
def test_ama_learns_the_right_strategy_per_room_ballet_task():
    """The bench's headline, end to end: trained jointly, the AMA picks the strategy that keeps the
    asked-about dancer for each task and answers well above any fixed strategy's bound."""
    from vla.memory.experiments import expected_strategy, train_ballet

    r = train_ballet("ama", steps=1500, eval_episodes=200, progress=False)
    assert r.chosen == {t: expected_strategy(t) for t in r.chosen}
    assert r.accuracy["mean"] > 0.85, r.accuracy
