"""Goal predicates and the success rule, on real MuJoCo states; the history tasks' ambiguity."""

import copy

import gymnasium as gym
import mujoco
import numpy as np
import pytest

import envs  # noqa: F401
from envs.cameras import CameraSpec
from envs.expert import ScriptedExpert
from envs.scene import CUBE_HALF, MUG_HALF_HEIGHT, MUG_RADIUS
from envs.tasks import CUE_STEPS, SceneView, in_region, lifted_and_held, on_plate

# The rule from the MV-Bench spec, written out here rather than imported, so that a change to the
# constants in envs.tasks cannot silently change what the tests demand.
SUCCESS_STEPS = 10  # consecutive control steps
SETTLED_SPEED = 0.01  # m/s

HOLD = np.array([0, 0, 0, 0, 0, 0, -1.0], np.float32)  # arm still, gripper open
ON_SIDE = (np.cos(np.pi / 4), np.sin(np.pi / 4), 0.0, 0.0)  # 90 degrees about x: a mug on its side


def _place(env, name, xyz, quat=(1.0, 0.0, 0.0, 0.0)):
    """Teleport a free body and zero its velocity."""
    m, d = env.model, env.data
    jnt = m.body_jntadr[m.body(name).id]
    q, v = m.jnt_qposadr[jnt], m.jnt_dofadr[jnt]
    d.qpos[q : q + 7] = [*xyz, *quat]
    d.qvel[v : v + 6] = 0.0
    mujoco.mj_forward(m, d)


def _hold_after_placing(task, obj, where, quat=(1.0, 0.0, 0.0, 0.0), steps=40, seed=0):
    """Place ``obj`` at ``where(env)`` and keep the arm still; per step: goal, success, z, speed."""
    env = gym.make(f"MVBench/{task}-v0", obs_mode="state").unwrapped
    env.reset(seed=seed)
    _place(env, obj, where(env), quat)
    rows = []
    for _ in range(steps):
        _, _, term, _, info = env.step(HOLD)
        rows.append((env.task.goal(env, env.layout), info["is_success"], env.position(obj)[2], env.speed(obj)))
    env.close()
    return rows


def _first(rows, col):
    return next((i for i, r in enumerate(rows) if r[col]), None)


# --- positive cases: the goal holds once settled, success exactly SUCCESS_STEPS later -------------


@pytest.mark.parametrize(
    "task, obj, where",
    [
        ("CubeInBowl", "red_cube", lambda e: e.position("bowl") + [0, 0, CUBE_HALF + 0.006]),
        ("CubeOnPlate", "green_cube", lambda e: e.position("plate") + [0, 0, CUBE_HALF + 0.012]),
        ("MugOnPlate", "purple_mug", lambda e: e.position("plate") + [0, 0, MUG_HALF_HEIGHT + 0.012]),
        ("PushCube", "yellow_cube", lambda e: e.position("target") + [0, 0, CUBE_HALF + 0.001]),
        ("StackCubes", "red_cube", lambda e: e.position("blue_cube") + [0, 0, 2 * CUBE_HALF + 0.001]),
        ("LitBowl", "red_cube", lambda e: e.position(e.layout["target"]) + [0, 0, CUBE_HALF + 0.006]),
    ],
)
def test_goal_reached_counts_only_after_ten_steps(task, obj, where):
    rows = _hold_after_placing(task, obj, where)
    g = _first(rows, 0)
    assert g is not None, f"{task}: the goal never held for a correctly placed {obj}"
    assert all(r[0] for r in rows[g:]), f"{task}: goal flickered once settled"
    assert _first(rows, 1) == g + SUCCESS_STEPS - 1, f"{task}: success must come {SUCCESS_STEPS} steps after the goal"


def _unlit(env):
    return "bowl_b" if env.layout["target"] == "bowl_a" else "bowl_a"


# --- negative cases ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "task, obj, where, quat",
    [
        # beside the container
        ("CubeInBowl", "red_cube", lambda e: e.position("bowl") + [0.12, 0, CUBE_HALF + 0.001], None),
        ("CubeOnPlate", "green_cube", lambda e: e.position("plate") + [0, 0.13, CUBE_HALF + 0.001], None),
        # a mug on its side, on the plate
        ("MugOnPlate", "purple_mug", lambda e: e.position("plate") + [0, 0, MUG_RADIUS + 0.012], ON_SIDE),
        # off-centre by 1.5 cm: stacked by the old half-cube tolerance, not by the new one
        ("StackCubes", "red_cube", lambda e: e.position("blue_cube") + [0.015, 0, 2 * CUBE_HALF + 0.001], None),
        # lifted 15 cm but not held: it is falling
        ("PickCube", "red_cube", lambda e: e.position("red_cube") + [0, 0, 0.15], None),
        # in the bowl that was not lit: a policy that forgot the cue must not score
        ("LitBowl", "red_cube", lambda e: e.position(_unlit(e)) + [0, 0, CUBE_HALF + 0.006], None),
        # ReturnCube: back at its start without ever having been on the plate
        ("ReturnCube", "red_cube", lambda e: np.array([*e.layout["start"], CUBE_HALF + 0.001]), None),
    ],
)
def test_goal_never_holds(task, obj, where, quat):
    rows = _hold_after_placing(task, obj, where, quat or (1.0, 0.0, 0.0, 0.0))
    assert not any(r[0] for r in rows) and not any(r[1] for r in rows)


@pytest.mark.parametrize(
    "task, obj, where",
    [
        ("CubeInBowl", "red_cube", lambda e: e.position("bowl") + [0, 0, 0.2]),  # dropped into the bowl
        ("CubeOnPlate", "green_cube", lambda e: e.position("plate") + [0, 0, 0.15]),  # dropped onto the plate
        ("PushCube", "yellow_cube", lambda e: e.position("target") + [0, 0, 0.1]),  # over the square, in the air
    ],
)
def test_no_goal_while_falling(task, obj, where):
    rows = _hold_after_placing(task, obj, where)
    falling = [r for r in rows if r[3] >= SETTLED_SPEED or r[2] > CUBE_HALF + 0.03]
    assert len(falling) >= 3, "the object should spend a few steps in the air"
    assert not any(r[0] or r[1] for r in falling), "goal held while the object was falling"
    g = _first(rows, 0)
    assert g is not None and _first(rows, 1) == g + SUCCESS_STEPS - 1  # lands, settles, then counts


@pytest.mark.parametrize(
    "task, obj", [("CubeInBowl", "red_cube"), ("PushCube", "yellow_cube"), ("PickCube", "red_cube")]
)
def test_expert_rollout_success_only_after_release_and_rest(task, obj):
    """Held above the bowl, released and still falling, pushed while in the square: none count."""
    env = gym.make(f"MVBench/{task}-v0", obs_mode="state").unwrapped
    expert = ScriptedExpert(env)
    obs, _ = env.reset(seed=4)
    log = []  # per step: touching, held, speed, z, success
    for _ in range(env.task.max_steps):
        obs, _, term, _, info = env.step(expert.act(obs))
        log.append((env.touching_gripper(obj), env.held(obj), env.speed(obj), env.position(obj)[2], info["is_success"]))
        if term:
            break
    assert log[-1][4], f"{task}: expert failed on seed 4"
    last = log[-SUCCESS_STEPS:]
    if task == "PickCube":  # lifted >= 10 cm and held in both fingers, all ten steps
        assert all(h and z - CUBE_HALF >= 0.1 for _, h, _, z, _ in last)
    else:  # released and at rest for the last ten steps
        assert all(not t and s < SETTLED_SPEED for t, _, s, _, _ in last)
        assert any(t for t, *_ in log), "the expert never touched the object?"


def _drive(env, target, gripper, steps):
    """A plain P-controller on the end-effector (independent of the scripted expert)."""
    for _ in range(steps):
        d = np.asarray(target) - env.ee_position()
        d *= min(1.0, 0.03 / max(np.linalg.norm(d), 1e-9))
        env.step(np.array([*d, 0, 0, 0, gripper], np.float32))


def test_object_held_still_in_the_bowl_is_not_done():
    """Resting on the bowl floor and at rest, but gripped: not 'in the bowl' until released."""
    env = gym.make("MVBench/CubeInBowl-v0", obs_mode="state").unwrapped
    env.reset(seed=0)
    _place(env, "red_cube", env.position("bowl") + [0, 0, CUBE_HALF + 0.009])
    env.step(HOLD)
    cube = env.position("red_cube")
    _drive(env, cube + [0, 0, 0.15], -1, 30)
    _drive(env, cube + [0, 0, 0.033], -1, 30)  # fingers around the cube
    _drive(env, cube + [0, 0, 0.033], 1, 20)  # close
    assert env.held("red_cube") and env.speed("red_cube") < SETTLED_SPEED
    assert env.position("red_cube")[2] < CUBE_HALF + 0.03  # down in the bowl
    assert not env.task.goal(env, env.layout)
    _drive(env, cube + [0, 0, 0.033], -1, 10)  # let go: now it is in the bowl
    _drive(env, cube + [0, 0, 0.15], -1, 15)
    assert not env.touching_gripper("red_cube") and env.task.goal(env, env.layout)


class _Scene(SceneView):
    """A scene given by numbers, for predicate cases that are awkward to set up in physics."""

    def __init__(self, positions, up=None, touching=(), held=()):
        self.positions, self.up = positions, up or {}
        self.touching, self.holding = set(touching), set(held)

    def position(self, name):
        return np.asarray(self.positions[name], float)

    def touching_gripper(self, name):
        return name in self.touching

    def held(self, name):
        return name in self.holding

    def speed(self, name):
        return 0.0

    def up_axis(self, name):
        return np.asarray(self.up.get(name, (0.0, 0.0, 1.0)))


def test_pick_needs_both_fingers():
    lifted = {"cube": (0.5, 0.0, CUBE_HALF + 0.12)}
    assert lifted_and_held(_Scene(lifted, touching={"cube"}, held={"cube"}), "cube")
    assert not lifted_and_held(_Scene(lifted, touching={"cube"}), "cube")  # one finger only: not held
    assert not lifted_and_held(_Scene({"cube": (0.5, 0.0, CUBE_HALF + 0.08)}, held={"cube"}), "cube")  # 8 cm


def test_cube_at_rest_above_the_square_is_not_in_it():
    """E.g. resting on something inside the square: at rest, released, over it, but not on the table."""
    scene = _Scene({"cube": (0.5, 0.0, CUBE_HALF + 0.04), "square": (0.5, 0.0, 0.0)})
    assert not in_region(scene, "cube", "square")
    scene.positions["cube"] = (0.5, 0.0, CUBE_HALF)
    assert in_region(scene, "cube", "square")


def test_tilted_mug_at_plate_height_is_not_on_the_plate():
    scene = _Scene({"mug": (0.5, 0.0, MUG_HALF_HEIGHT + 0.012), "plate": (0.5, 0.0, 0.0)})
    assert on_plate(scene, "mug", "plate", MUG_HALF_HEIGHT, mug=True)
    tilt = np.radians(30)
    scene.up["mug"] = (np.sin(tilt), 0.0, np.cos(tilt))  # leaning 30 degrees, e.g. against the rim
    assert not on_plate(scene, "mug", "plate", MUG_HALF_HEIGHT, mug=True)


# --- history tasks ----------------------------------------------------------------------------

CAM = (CameraSpec("main", azimuth=0.0, elevation=50.0),)


def _expert_episode(task, seed, layout=None, extra_steps=0):
    """Frames, expert actions and states of one episode (plus ``extra_steps`` after success)."""
    env = gym.make(f"MVBench/{task}-v0", cameras=CAM, width=64, height=64).unwrapped
    expert = ScriptedExpert(env)
    obs, _ = env.reset(seed=seed, options={"layout": layout} if layout is not None else None)
    start_layout = copy.deepcopy(env.layout)
    frames, actions, states, done_at = [], [], [], None
    for t in range(env.task.max_steps + extra_steps):
        a = expert.act(obs)
        frames.append(obs["cameras"]["main"]["rgb"])
        actions.append(a)
        states.append(obs["state"])
        obs, _, term, _, _ = env.step(a)
        done_at = t if term and done_at is None else done_at
        if done_at is not None and t >= done_at + extra_steps:
            break
    frames.append(obs["cameras"]["main"]["rgb"])
    actions.append(expert.act(obs))
    states.append(obs["state"])
    env.close()
    return start_layout, frames, actions, states, done_at


def test_lit_bowl_same_image_different_action():
    """Two episodes that differ only in which bowl was lit: after the cue, identical frames, then
    the expert heads for different bowls while the frame still shows nothing that tells them apart."""
    layout, fa, aa, _, done_a = _expert_episode("LitBowl", seed=3)
    other = copy.deepcopy(layout)
    other["target"] = "bowl_b" if layout["target"] == "bowl_a" else "bowl_a"
    _, fb, ab, _, done_b = _expert_episode("LitBowl", seed=3, layout=other)
    assert done_a is not None and done_b is not None, "the expert should solve both episodes"
    assert not np.array_equal(fa[0], fb[0]), "the cue (the lit bowl) must be visible in the first frame"
    assert all(np.array_equal(fa[t], fb[t]) for t in range(CUE_STEPS, CUE_STEPS + 5)), "after the cue both look alike"
    split = next(t for t in range(min(len(aa), len(ab))) if np.linalg.norm(aa[t][:3] - ab[t][:3]) > 1e-3)
    assert split > CUE_STEPS, "the decision must come after the cue has gone"
    assert np.array_equal(fa[split], fb[split]), "same current image at the decision step"
    cos = aa[split][:2] @ ab[split][:2] / (np.linalg.norm(aa[split][:2]) * np.linalg.norm(ab[split][:2]))
    assert cos < 0.5, f"the two expert actions should head different ways (cos {cos:.2f})"


def _copy_sim_state(src, dst):
    """Give ``dst`` exactly the physical and controller state of ``src`` (same task)."""
    spec = int(mujoco.mjtState.mjSTATE_INTEGRATION)
    state = np.empty(mujoco.mj_stateSize(src.model, spec))
    mujoco.mj_getState(src.model, src.data, state, spec)
    mujoco.mj_setState(dst.model, dst.data, state, spec)
    dst.model.body_pos[:] = src.model.body_pos
    dst.model.body_quat[:] = src.model.body_quat
    mujoco.mj_forward(dst.model, dst.data)
    for attr in ("_target_pos", "_target_rot", "_gripper", "_t", "_streak"):
        setattr(dst, attr, copy.deepcopy(getattr(src, attr)))


def test_return_cube_same_image_different_action():
    """The cube rests on the plate; two episodes are in exactly the same physical state but started
    the cube from different spots. Their frames are identical until the expert, carrying the cube
    back, heads for different places: the image alone cannot tell where 'back' is."""
    a = gym.make("MVBench/ReturnCube-v0", cameras=CAM, width=64, height=64).unwrapped
    b = gym.make("MVBench/ReturnCube-v0", cameras=CAM, width=64, height=64).unwrapped
    ea, eb = ScriptedExpert(a), ScriptedExpert(b)
    obs_a, _ = a.reset(seed=1)
    for _ in range(a.task.max_steps):  # phase 1: onto the plate
        obs_a, *_ = a.step(ea.act(obs_a))
        if a.layout["placed"]:
            break
    assert a.layout["placed"], "the expert should put the cube on the plate"
    other = copy.deepcopy(a.layout)
    start = np.asarray(other["start"])
    plate = a.position("plate")[:2]
    mirrored = plate + (plate - start) * np.array([1.0, -1.0])  # a different start spot, as far away
    other["start"] = mirrored.tolist()
    b.reset(seed=1, options={"layout": other})
    _copy_sim_state(a, b)
    obs_b = b.step(np.array([0, 0, 0, 0, 0, 0, -1], np.float32))[0]  # render b's copy of the state
    obs_a = a.step(np.array([0, 0, 0, 0, 0, 0, -1], np.float32))[0]
    ea.reset()
    split = None
    for t in range(120):
        img_a, img_b = obs_a["cameras"]["main"]["rgb"], obs_b["cameras"]["main"]["rgb"]
        act_a, act_b = ea.act(obs_a), eb.act(obs_b)
        if np.linalg.norm(act_a[:3] - act_b[:3]) > 1e-3:
            split = t
            break
        assert np.array_equal(img_a, img_b), f"step {t}: same actions so far, the frames must agree"
        obs_a, obs_b = a.step(act_a)[0], b.step(act_b)[0]
    assert split is not None and split > 5, "the experts should first re-grasp the cube together, then diverge"
    assert np.array_equal(img_a, img_b), "same current image at the decision step"
    cos = act_a[:2] @ act_b[:2] / (np.linalg.norm(act_a[:2]) * np.linalg.norm(act_b[:2]))
    assert cos < 0.9, f"the two expert actions should head to different start spots (cos {cos:.2f})"


def test_layout_option_rejects_foreign_layouts():
    env = gym.make("MVBench/LitBowl-v0", obs_mode="state")
    with pytest.raises(ValueError, match=r"options\['layout'\]"):
        env.reset(seed=0, options={"layout": {"poses": {}}})
