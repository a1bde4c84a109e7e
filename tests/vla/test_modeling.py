import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vla.adapter import MVBenchPolicy, env_step_input
from vla.configuration import BASELINES, VisionConfig, VLAConfig, apply_baseline, load_preset
from vla.language import InstructionTokenizer
from vla.modeling import EE_POSITION, GRIPPER_WIDTH, FourDVLAPolicy, collate_history, compute_stats

TEXTS = ["pick up the red cube", "put the red cube in the bowl that was lit"]
VOCAB = InstructionTokenizer.build(TEXTS).vocab
S = 32


def tiny(**kw) -> VLAConfig:
    base = dict(vision=VisionConfig(image_size=S, grid=2), d_model=32, layers=1, heads=2, ffn=64, history_k=3,
                history_window=6, history_stride=2)  # fmt: skip
    base.update(kw)
    return VLAConfig(**base)


def batch(b=2, t=3, c=1, h=1, seed=0, depth=True):
    g = torch.Generator().manual_seed(seed)
    K = torch.tensor([[S * 1.2, 0, S / 2], [0, S * 1.2, S / 2], [0, 0, 1.0]])
    w2c = torch.eye(4)
    w2c[:3, :3] = torch.tensor([[0.0, -1, 0], [0, 0, -1], [1, 0, 0]])  # looking along +x
    w2c[2, 3] = 0.0
    out = {
        "observation.images": torch.rand(b, t, c, 3, S, S, generator=g),
        "observation.intrinsics": K.expand(b, t, c, 3, 3).clone(),
        "observation.extrinsics": w2c.expand(b, t, c, 4, 4).clone(),
        "observation.time": torch.tensor([[-4.0, -2.0, 0.0][-t:]] * b),
        "observation.frame_mask": torch.ones(b, t, dtype=torch.bool),
        "observation.state": torch.randn(b, 15, generator=g),
        "task": [TEXTS[i % 2] for i in range(b)],
        "action": torch.cat(
            [0.02 * torch.randn(b, h, 6, generator=g), torch.sign(torch.randn(b, h, 1, generator=g))], -1
        ),
        "action_mask": torch.ones(b, h, dtype=torch.bool),
    }
    if depth:
        out["observation.depth"] = 0.5 + torch.rand(b, t, c, S, S, generator=g)
    return out


@pytest.mark.parametrize("name", sorted(BASELINES))
@pytest.mark.parametrize("keypoints", [0, 4])
def test_every_baseline_trains_one_step_with_finite_gradients(name, keypoints):
    torch.manual_seed(0)
    cfg = apply_baseline(tiny(vision=VisionConfig(image_size=S, grid=2, keypoints=keypoints)), name)
    pol = FourDVLAPolicy(cfg, VOCAB)
    bt = batch(t=cfg.frames_per_step, depth=cfg.uses_depth)
    loss, metrics = pol(bt)
    assert loss.ndim == 0 and set(metrics) >= {"loss", "l_trans", "l_rot", "l_grip", "l_dir"}
    loss.backward()
    groups = {"vision": pol.vision, "proj": pol.proj, "fusion": pol.fusion, "head": pol.head, "text": pol.text}
    if cfg.spatial != "none":
        groups["spatial"] = pol.spatial.mlp
    if cfg.time == "sinusoidal":
        groups["time"] = pol.time_embed
    for gname, mod in groups.items():
        grads = [p.grad for p in mod.parameters() if p.requires_grad]
        assert grads and all(g is not None and torch.isfinite(g).all() for g in grads), gname
        assert sum(g.abs().sum() for g in grads) > 0, f"{gname} got no gradient"
    chunk = pol.predict_action_chunk(bt)
    assert chunk.shape == (2, 1, 7) and set(chunk[..., 6].unique().tolist()) <= {-1.0, 1.0}


def test_keypoint_tokens_attend_to_where_the_features_are():
    """A feature map with one hot cell: a keypoint whose logits read that channel puts its softmax
    weight there, and its token carries that cell's feature (plus its position encoding)."""
    from vla.modeling import VisionEncoder

    enc = VisionEncoder("resnet10t", 1, 2, S, keypoints=2)
    h = S // 4
    fmap = torch.zeros(1, enc.channels, h, h)
    fmap[0, 0, 3, 5] = 10.0  # the hot cell: row 3, column 5

    class Fixed(torch.nn.Module):
        def forward(self, x):
            return [fmap]

    enc.net = Fixed()
    with torch.no_grad():
        enc.keypoint_logits.weight.zero_()
        enc.keypoint_logits.bias.zero_()
        enc.keypoint_logits.weight[0, 0] = 2.0  # keypoint 0 reads channel 0; keypoint 1 reads nothing
        enc.uv_embed.weight.zero_()
        enc.uv_embed.bias.zero_()
    tokens, weights = enc(torch.rand(1, 3, S, S))
    assert tokens.shape == (1, 2, enc.channels) and weights.shape == (1, 2, h, h)
    torch.testing.assert_close(weights.sum((-1, -2)), torch.ones(1, 2))
    assert weights[0, 0, 3, 5] > 0.99 and torch.allclose(weights[0, 1], torch.full((h, h), 1 / h**2))
    torch.testing.assert_close(tokens[0, 0, 0], 10.0 * weights[0, 0, 3, 5])  # the hot cell's feature
    torch.testing.assert_close(tokens[0, 1, 0], torch.tensor(10.0 / h**2))  # uniform: the map's mean


def test_time_tokens_are_concatenated_not_added():
    seen = {}
    for time in ("sinusoidal", "none"):
        pol = FourDVLAPolicy(tiny(time=time), VOCAB)
        pol.fusion.register_forward_hook(lambda m, args, out, key=time: seen.__setitem__(key, args[0].shape[1]))
        pol(batch(t=3))
    assert seen["sinusoidal"] - seen["none"] == 3  # one extra token per frame


def test_time_offsets_change_the_prediction_only_with_time_tokens():
    for time, should_change in (("sinusoidal", True), ("learned", True), ("none", False)):
        torch.manual_seed(0)
        pol = FourDVLAPolicy(tiny(time=time), VOCAB).eval()
        a, b = batch(seed=1), batch(seed=1)
        b["observation.time"] = b["observation.time"] * 3
        changed = not torch.allclose(pol._predict(a), pol._predict(b))
        assert changed == should_change, time


def test_padded_frames_do_not_change_the_prediction():
    pol = FourDVLAPolicy(tiny(), VOCAB).eval()
    a = batch(seed=2)
    a["observation.frame_mask"][:, 0] = False
    b = {k: (v.clone() if torch.is_tensor(v) else v) for k, v in a.items()}
    b["observation.images"][:, 0] = torch.rand_like(b["observation.images"][:, 0])
    b["observation.depth"][:, 0] = 3.0
    torch.testing.assert_close(pol._predict(a), pol._predict(b))


def test_spatial_frame_decides_whether_the_camera_pose_matters():
    """Moving the camera (w2c) while keeping image and depth: the base-frame points move, the
    camera-frame points do not; RGB-only ignores both."""
    for spatial, should_change in (("base", True), ("camera", False), ("none", False)):
        torch.manual_seed(0)
        pol = FourDVLAPolicy(tiny(spatial=spatial), VOCAB).eval()
        with torch.no_grad():
            if pol.spatial is not None:
                pol.spatial.mlp[-1].weight.normal_(std=1.0)  # make the encoding matter
        a = batch(seed=3, depth=spatial != "none")
        b = {k: (v.clone() if torch.is_tensor(v) else v) for k, v in a.items()}
        b["observation.extrinsics"][..., 1, 3] += 0.3  # the camera moved 30 cm sideways
        changed = not torch.allclose(pol._predict(a), pol._predict(b), atol=1e-5)
        assert changed == should_change, spatial


def test_loss_matches_its_definition():
    torch.manual_seed(0)
    cfg = tiny(lambda_dir=0.7, chunk=2)
    stats = {"action_mean": torch.full((6,), 0.01), "action_std": torch.full((6,), 0.02),
             "state_mean": torch.zeros(15), "state_std": torch.ones(15)}  # fmt: skip
    pol = FourDVLAPolicy(cfg, VOCAB, stats)
    bt = batch(h=2, seed=4)
    bt["action"][0, 1, :3] = 0.0  # no translation: no direction term here
    bt["action_mask"][1, 1] = False  # past the episode end
    pred = torch.randn(2, 2, 7)
    pol._predict = lambda b: pred
    loss, m = pol(bt)
    a, keep = bt["action"], bt["action_mask"]
    tn = (a[..., :6] - 0.01) / 0.02
    lt = ((pred[..., :3] - tn[..., :3]) ** 2).mean(-1)[keep].mean()
    lr = ((pred[..., 3:6] - tn[..., 3:6]) ** 2).mean(-1)[keep].mean()
    lg = F.binary_cross_entropy_with_logits(pred[..., 6][keep], ((a[..., 6] + 1) / 2)[keep])
    dx_hat = pred[..., :3] * 0.02 + 0.01
    moving = keep & (a[..., :3].norm(dim=-1) > 1e-3)
    ld = ((dx_hat / dx_hat.norm(dim=-1, keepdim=True) - a[..., :3] / a[..., :3].norm(dim=-1, keepdim=True)) ** 2).sum(
        -1
    )
    ld = ld[moving].mean()
    torch.testing.assert_close(loss, lt + lr + lg + 0.7 * ld)
    assert m["l_dir"] == pytest.approx(ld.item(), rel=1e-5)


def test_direction_loss_is_skipped_without_translation():
    pol = FourDVLAPolicy(tiny(), VOCAB)
    bt = batch()
    bt["action"][..., :3] = 0.0
    _, m = pol(bt)
    assert m["l_dir"] == 0.0


def test_stats_travel_with_the_weights(tmp_path):
    rng = np.random.default_rng(0)
    stats = compute_stats(rng.normal(size=(100, 7)) * 0.01, rng.normal(size=(100, 15)))
    pol = FourDVLAPolicy(tiny(chunk=2), VOCAB, stats).eval()
    pol.save(tmp_path / "ckpt", meta={"render_profile": "lowpoly"})
    back = FourDVLAPolicy.load(tmp_path / "ckpt")
    bt = batch(h=2)
    torch.testing.assert_close(back.predict_action_chunk(bt), pol.predict_action_chunk(bt))
    torch.testing.assert_close(back.action_std, stats["action_std"])
    assert back.meta["render_profile"] == "lowpoly" and back.vocab == VOCAB


def test_select_action_keeps_history_and_an_action_queue():
    torch.manual_seed(0)
    pol = FourDVLAPolicy(tiny(chunk=3), VOCAB).eval()
    calls = []
    real = pol.predict_action_chunk
    pol.predict_action_chunk = lambda b: (calls.append(b), real(b))[1]
    one = {k: v[0, -1] for k, v in batch(b=1).items() if k.startswith("observation.") and k not in (
        "observation.time", "observation.frame_mask", "observation.state")}  # fmt: skip
    g = torch.Generator().manual_seed(1)
    for _ in range(7):
        step = dict(one, **{"observation.images": torch.rand(one["observation.images"].shape, generator=g)})
        step.update({"observation.state": torch.zeros(15), "task": TEXTS[0]})
        a = pol.select_action(step)
        assert a.shape == (7,)
    assert len(calls) == 3  # steps 0, 3, 6: a chunk of 3 actions is played out between predictions
    assert calls[-1]["observation.time"][0, -1] == 0 and calls[-1]["observation.frame_mask"].sum() >= 2
    pol.reset()
    assert len(pol._bank) == 0 and not pol._queue


def test_batched_select_actions_equal_one_policy_at_a_time(monkeypatch):
    torch.manual_seed(0)
    pol = FourDVLAPolicy(tiny(chunk=3), VOCAB).eval()
    one = {k: v[0, -1] for k, v in batch(b=1).items() if k.startswith("observation.") and k not in (
        "observation.time", "observation.frame_mask", "observation.state")}  # fmt: skip
    g = torch.Generator().manual_seed(2)
    n, steps = 3, 8
    obs = [[dict(one, **{"observation.images": torch.rand(one["observation.images"].shape, generator=g),
                         "observation.state": torch.randn(15, generator=g), "task": TEXTS[i % 2]})
            for i in range(n)] for _ in range(steps)]  # fmt: skip
    solo = [pol.shallow_copy() for _ in range(n)]
    together = [pol.shallow_copy() for _ in range(n)]
    calls = []
    real = FourDVLAPolicy.predict_action_chunk
    for t in range(steps):
        if t == 2:  # slot 1 starts a new episode: its queue runs out of phase with the others
            solo[1].reset()
            together[1].reset()
        want = torch.stack([solo[i].select_action(obs[t][i]) for i in range(n)])
        with monkeypatch.context() as m:
            m.setattr(
                FourDVLAPolicy, "predict_action_chunk", lambda self, b: (calls.append(len(b["task"])), real(self, b))[1]
            )
            got = FourDVLAPolicy.select_actions(together, obs[t])
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    # one forward pass per step that needs one, over the slots whose chunk ran out: steps 0 (all),
    # 2 (the restarted slot), 3 (the other two), 5 (restarted), 6 (the other two)
    assert calls == [3, 1, 2, 1, 2]
    other = FourDVLAPolicy(tiny(chunk=3), VOCAB).eval()
    with pytest.raises(ValueError, match="share one set of weights"):
        FourDVLAPolicy.select_actions([pol, other], obs[0][:2])


@pytest.mark.parametrize("history_grad", [True, False])
def test_history_grad_decides_whether_past_frames_train_the_backbone(history_grad):
    torch.manual_seed(0)
    pol = FourDVLAPolicy(tiny(history_grad=history_grad), VOCAB).train()
    b = batch(b=4, t=3)
    b["observation.images"].requires_grad_(True)
    loss, _ = pol(b)
    loss.backward()
    g = b["observation.images"].grad.abs().flatten(2).sum(-1)  # [B, T]
    assert (g[:, -1] > 0).all()  # the current frame always trains the backbone
    assert (g[:, :-1] > 0).all() if history_grad else (g[:, :-1] == 0).all()
    # the history still reaches the prediction through the fusion transformer either way
    pol.eval()
    with torch.no_grad():
        base = pol.predict_action_chunk(b)
        other = dict(b, **{"observation.images": b["observation.images"].detach().clone()})
        other["observation.images"][:, 0] = torch.rand_like(other["observation.images"][:, 0])
        assert not torch.allclose(pol._predict(other), pol._predict(b))
    assert base.shape == (4, 1, 7)


@pytest.mark.parametrize("proprio", ["full", "gripper", "none"])
def test_proprio_decides_which_state_entries_reach_the_prediction(proprio):
    torch.manual_seed(0)
    pol = FourDVLAPolicy(tiny(proprio=proprio), VOCAB).eval()
    b = batch(b=2)
    base = pol._predict(b)
    for index, name in ((0, "ee x"), (5, "ee quaternion"), (GRIPPER_WIDTH, "gripper width"), (10, "a joint")):
        moved = dict(b, **{"observation.state": b["observation.state"].clone()})
        moved["observation.state"][:, index] += 3.0
        reached = not torch.allclose(pol._predict(moved), base)
        expected = proprio == "full" or (proprio == "gripper" and index == GRIPPER_WIDTH)
        assert reached == expected, f"{name} with proprio={proprio!r}"


def test_gripper_width_index_matches_the_env():
    import gymnasium as gym

    import envs  # noqa: F401

    env = gym.make("MVBench/PickCube-v0", obs_mode="state")
    obs, _ = env.reset(seed=0)
    opened = obs["state"].copy()
    for _ in range(15):
        obs, *_ = env.step(np.array([0, 0, 0, 0, 0, 0, 1.0], np.float32))  # close the gripper in place
    changed = np.abs(obs["state"] - opened)
    assert obs["state"][GRIPPER_WIDTH] < opened[GRIPPER_WIDTH] - 0.02  # fingers closed by > 2 cm
    assert changed[:3].max() < 0.01  # the end effector stayed put
    np.testing.assert_allclose(obs["state"][EE_POSITION], env.unwrapped.ee_position(), atol=1e-6)
    env.close()


def test_optim_params_cover_every_trainable_parameter_once():
    pol = FourDVLAPolicy(tiny(), VOCAB)
    groups = pol.get_optim_params()
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == sum(1 for p in pol.parameters() if p.requires_grad)
    assert groups[1]["weight_decay"] == 0.0 and any(p is pol.queries for p in groups[1]["params"])


def test_vit_backbone_loads_an_original_timm_checkpoint_from_a_local_file(tmp_path):
    """A plain timm ViT checkpoint (224 px, as published) loads into the 32 px feature backbone: the
    weights are mapped onto the feature wrapper and the position embedding is resampled."""
    import timm

    from worldline.io import save_weights

    torch.manual_seed(0)
    original = timm.create_model("vit_tiny_patch16_224", pretrained=False)
    save_weights(original.state_dict(), tmp_path / "vit.safetensors")
    vision = VisionConfig(backbone="vit_tiny_patch16_224", stage=11, image_size=S, grid=2,
                          pretrained_path=str(tmp_path / "vit.safetensors"))  # fmt: skip
    pol = FourDVLAPolicy(tiny(vision=vision), VOCAB)
    got = {k.split("model.", 1)[-1]: v for k, v in pol.vision.net.state_dict().items()}
    assert torch.equal(got["patch_embed.proj.weight"], original.state_dict()["patch_embed.proj.weight"])
    assert torch.equal(got["blocks.11.mlp.fc2.weight"], original.state_dict()["blocks.11.mlp.fc2.weight"])
    assert got["pos_embed"].shape[1] == 1 + (S // 16) ** 2  # resampled from 1 + 14 * 14
    pol(batch())[0].backward()
    with pytest.raises(ValueError, match="vision: cannot build 'resnet10t' at stage 9"):
        FourDVLAPolicy(tiny(vision=VisionConfig(stage=9, image_size=S)), VOCAB)
    with pytest.raises(FileNotFoundError, match="vision.pretrained_path: no such file"):
        FourDVLAPolicy(tiny(vision=VisionConfig(image_size=S, pretrained_path=str(tmp_path / "nope.pt"))), VOCAB)


def test_two_cameras():
    pol = FourDVLAPolicy(tiny(cameras=["main", "wrist"]), VOCAB)
    loss, _ = pol(batch(c=2))
    loss.backward()
    assert pol.cam_embed.weight.grad[:2].abs().sum(-1).gt(0).all() and pol.cam_embed.weight.grad[2:].abs().sum() == 0


def test_camera_frame_points_use_a_camera_frame_box():
    pol = FourDVLAPolicy(tiny(spatial="camera"), VOCAB)
    assert pol.spatial.high[2] >= 3.0  # depth up to 3 m is not clamped


def test_a_bad_step_does_not_poison_the_episode():
    pol = FourDVLAPolicy(tiny(), VOCAB).eval()
    one = {k: v[0, -1] for k, v in batch(b=1).items() if k in (
        "observation.images", "observation.depth", "observation.intrinsics", "observation.extrinsics")}  # fmt: skip
    bad = dict(one, **{"observation.state": torch.full((15,), float("nan")), "task": TEXTS[0]})
    with pytest.raises(ValueError, match="observation.state: contains NaN"):
        pol.select_action(bad)
    with pytest.raises(ValueError, match="observation.state: missing"):
        pol.select_action(dict(one, task=TEXTS[0]))
    assert pol.select_action(dict(one, **{"observation.state": torch.zeros(15), "task": TEXTS[0]})).shape == (7,)
    with pytest.raises(ValueError, match=r"observation.images: expected 32x32 frames"):
        pol(dict(batch(), **{"observation.images": torch.rand(2, 3, 1, 3, 16, 16)}))


# --- bad input ---------------------------------------------------------------------------------


def _env_obs(depth=True):
    cam = {"rgb": np.zeros((S, S, 3), np.uint8), "intrinsics": np.eye(3, dtype=np.float32),
           "extrinsics": np.eye(4, dtype=np.float32)}  # fmt: skip
    if depth:
        cam["depth"] = np.ones((S, S), np.float32)
    return {"cameras": {"main": cam}, "state": np.zeros(15, np.float32)}


def test_bad_input_names_the_field():
    cfg = tiny()
    with pytest.raises(ValueError, match=r"observation.cameras.main.depth: missing, but spatial='base'"):
        env_step_input(_env_obs(depth=False), "x", cfg)
    env_step_input(_env_obs(depth=False), "x", apply_baseline(cfg, "rgb-single"))  # RGB-only needs none
    bad = _env_obs()
    bad["cameras"]["main"]["intrinsics"] = np.eye(4)
    with pytest.raises(ValueError, match=r"observation.cameras.main.intrinsics: expected shape \[3, 3\]"):
        env_step_input(bad, "x", cfg)
    nan = _env_obs()
    nan["state"][3] = np.nan
    with pytest.raises(ValueError, match="observation.state: contains NaN"):
        env_step_input(nan, "x", cfg)
    with pytest.raises(ValueError, match=r"observation.cameras: no camera 'main'"):
        env_step_input({"cameras": {"front": {}}, "state": np.zeros(15)}, "x", cfg)
    pol = FourDVLAPolicy(cfg, VOCAB)
    bt = batch()
    bt["observation.extrinsics"] = bt["observation.extrinsics"][..., :3, :]
    with pytest.raises(ValueError, match=r"observation.extrinsics: expected shape \[2, 3, 1, 4, 4\]"):
        pol(bt)
    bt = batch()
    del bt["observation.depth"]
    with pytest.raises(ValueError, match="observation.depth: spatial='base' lifts depth"):
        pol(bt)
    bt = batch()
    bt["observation.state"][0, 0] = float("inf")
    with pytest.raises(ValueError, match="observation.state: contains NaN or inf"):
        pol(bt)


def test_collate_history_left_pads():
    f = {"observation.images": torch.zeros(1, 3, 4, 4)}
    out = collate_history([f, f], [-4, 0], 3)
    assert out["observation.frame_mask"].tolist() == [[False, True, True]]
    assert out["observation.time"].tolist() == [[-4.0, -4.0, 0.0]] and out["observation.images"].shape[1] == 3


def test_adapter_copies_share_weights_but_not_history():
    pol = FourDVLAPolicy(tiny(), VOCAB)
    pol.meta = {"render_profile": "lowpoly"}
    a = MVBenchPolicy(pol)
    import copy

    b = copy.deepcopy(a)
    assert b.policy.vision is a.policy.vision and b.render_profile == "lowpoly"
    a.act(_env_obs(), TEXTS[0])
    assert len(a.policy._bank) == 1 and len(b.policy._bank) == 0
    assert not a.wrist and MVBenchPolicy(FourDVLAPolicy(tiny(cameras=["main", "wrist"]), VOCAB)).wrist


def test_presets_load():
    for name in ("cpu-tiny", "gpu-base"):
        cfg = load_preset(name)
        assert cfg.spatial == "base" and cfg.sampler == "memory_bank"
    with pytest.raises(FileNotFoundError, match="preset: no such file"):
        load_preset("nope")


@pytest.mark.parametrize("memory", ["sat-fifo", "sat-pm"])
def test_spatial_memory_option_trains_one_step_and_reads_places(memory):
    """memory='sat-*': past frames become place-embedded memory tokens read by the current frame."""
    torch.manual_seed(0)
    cfg = tiny(memory=memory, memory_cell=0.2)
    assert cfg.place_grid == (5, 6, 4)  # workspace 1.0 x 1.2 x 0.7 m in 0.2 m cells
    pol = FourDVLAPolicy(cfg, VOCAB)
    bt = batch(t=3)
    ee = torch.tensor([[0.31, 0.01, 0.21], [0.52, 0.11, 0.21], [0.5, 0.1, 0.3]])
    bt["observation.ee_position"] = ee.expand(2, 3, 3).clone()
    loss, _ = pol(bt)
    loss.backward()
    grads = {n: p.grad for n, p in pol.history_memory.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    assert grads["place.table.weight"].abs().sum() > 0  # place embeddings are trained
    pol.eval()
    with torch.no_grad():
        base = pol._predict(bt)
        same_cell = dict(bt, **{"observation.ee_position": bt["observation.ee_position"] + 0.05})
        torch.testing.assert_close(pol._predict(same_cell), base)  # same cells: same places
        moved = bt["observation.ee_position"].clone()
        moved[:, 0, 0] += 0.3  # a past frame's end effector in another cell
        assert not torch.allclose(pol._predict(dict(bt, **{"observation.ee_position": moved})), base, atol=1e-5)
        current = bt["observation.ee_position"].clone()
        current[:, -1] += 0.3  # the current frame is a query, not a memory event: its place is not read
        torch.testing.assert_close(pol._predict(dict(bt, **{"observation.ee_position": current})), base)
    with pytest.raises(ValueError, match=r"observation.ee_position: expected shape \[2, 3, 3\], got None"):
        pol._predict({k: v for k, v in bt.items() if k != "observation.ee_position"})
    with pytest.raises(ValueError, match="memory: 'sat-pm' reads past frames; sampler='single'"):
        tiny(memory="sat-pm", sampler="single")
    with pytest.raises(ValueError, match="history_k=1 gives none"):
        tiny(memory="sat-fifo", history_k=1)
    with pytest.raises(ValueError, match="memory: expected none, fifo, sat-fifo or sat-pm, got 'lru'"):
        tiny(memory="lru")
    with pytest.raises(ValueError, match="memory_top_k: expected >= 2"):
        tiny(memory="sat-pm", memory_top_k=1)
    # one step at a time: the bank keeps each frame's end-effector position
    pol.reset()
    for _ in range(3):
        obs = {"observation.images": torch.rand(1, 3, S, S), "observation.depth": 0.5 + torch.rand(1, S, S),
               "observation.intrinsics": bt["observation.intrinsics"][0, 0],
               "observation.extrinsics": bt["observation.extrinsics"][0, 0],
               "observation.state": torch.randn(15), "task": TEXTS[0]}  # fmt: skip
        assert pol.select_action(obs).shape == (7,)
