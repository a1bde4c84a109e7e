"""Tabletop tasks in the spirit of LIBERO-Spatial: objects, randomised layouts, instructions and
goal predicates. How a scripted expert solves a task lives in :mod:`envs.expert`.

A task never touches MuJoCo directly: it reads a :class:`SceneView` (object positions, contacts,
velocities). Layouts are sampled from the env's seeded generator.

Success rule (enforced by the env, see :data:`SUCCESS_STEPS`): a task's goal predicate must hold
for 10 consecutive control steps (0.5 s at 20 Hz). The predicates themselves demand that the
placed object is settled (moving slower than 1 cm/s) and not touching the fingers, so a cube
does not count as "in the bowl" at the instant the gripper opens above it, nor a pushed cube as
"in the square" while the hand still pushes it. PickCube is the exception: its goal is the cube
lifted at least 10 cm and held between both fingers.

Two tasks need memory: the frame the policy sees at the decisive moment does not show what the
right action depends on.

- **ReturnCube**: move the cube onto the plate, then put it back where it was. Nothing marks the
  start spot, and the scene with the cube back home looks like the scene at the start.
- **LitBowl**: one of two identical bowls lights up for the first second
  (:data:`CUE_STEPS`), then looks like the other; the cube goes into the bowl that was lit.

A task may keep per-episode progress in its layout dict (``track_fn`` updates it after every
control step) and may change object colours over time (``appearance_fn``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from envs.scene import (
    BOWL_RADIUS,
    CUBE_HALF,
    MUG_HALF_HEIGHT,
    PLATE_RADIUS,
    REGION_HALF,
    ObjectSpec,
)

#: Where objects may be placed (base frame, metres): x forward, y left.
WORKSPACE_X = (0.38, 0.66)
WORKSPACE_Y = (-0.26, 0.26)
_FOOTPRINT = {"cube": 0.035, "mug": 0.045, "bowl": BOWL_RADIUS + 0.02, "plate": PLATE_RADIUS + 0.015, "region": 0.07}

SUCCESS_STEPS = 10  # consecutive control steps the goal predicate must hold (0.5 s at 20 Hz)
SETTLED_SPEED = 0.01  # m/s: an object slower than this is at rest
LIFT_HEIGHT = 0.10  # PickCube: the cube's bottom face at least this far above the table (m)
ON_TABLE_TOL = 0.005  # m: a cube resting on the table has its centre within this of CUBE_HALF
STACK_XY_TOL = 0.012  # m: top cube centre within this of the bottom cube's, in xy (a cube is 4 cm)
RETURN_XY_TOL = 0.02  # m: ReturnCube's cube back within this of its start, in xy
UPRIGHT_COS = 0.97  # a mug is upright when its axis is within ~14 degrees of vertical
CUE_STEPS = 20  # LitBowl: control steps the cue is shown (1 s at 20 Hz)


class SceneView:
    """What tasks may read of the simulation (implemented by the env)."""

    def position(self, name: str) -> np.ndarray:  # [3] metres, base frame
        raise NotImplementedError

    def touching_gripper(self, name: str) -> bool:  # in contact with either finger
        raise NotImplementedError

    def held(self, name: str) -> bool:  # in contact with both fingers
        raise NotImplementedError

    def speed(self, name: str) -> float:  # m/s, linear speed of a movable object
        raise NotImplementedError

    def yaw(self, name: str) -> float:  # radians about z
        raise NotImplementedError

    def up_axis(self, name: str) -> np.ndarray:  # [3] the object's local z axis in the base frame
        raise NotImplementedError

    def ee_position(self) -> np.ndarray:  # [3] metres, the end-effector site
        raise NotImplementedError


@dataclass
class Task:
    """A task: objects, how to lay them out, what to say, and when its goal holds.

    Attributes:
        goal_fn: ``(scene, layout) -> bool``, whether the goal state holds *now*; success needs
            it for :data:`SUCCESS_STEPS` consecutive steps.
        layout_fn: ``(rng, objects) -> layout`` (default: non-overlapping random poses).
        track_fn: ``(scene, layout) -> None``, called after every control step to record
            per-episode progress in ``layout`` (e.g. "the cube has been on the plate").
        appearance_fn: ``(step, layout) -> {object: colour}``, colour overrides at a control
            step (0 = the reset observation); objects not named keep their own colour.
    """

    name: str
    objects: tuple[ObjectSpec, ...]
    instruction_fn: Callable[[dict], str]
    goal_fn: Callable[[SceneView, dict], bool]
    layout_fn: Callable[[np.random.Generator, tuple[ObjectSpec, ...]], dict] | None = None
    track_fn: Callable[[SceneView, dict], None] | None = None
    appearance_fn: Callable[[int, dict], dict[str, str]] | None = None
    max_steps: int = 120
    description: str = ""
    needs_memory: bool = False

    def sample_layout(self, rng: np.random.Generator) -> dict:
        """Return ``{"poses": {name: (x, y, yaw)}, ...}`` plus any task-specific choices."""
        if self.layout_fn is not None:
            return self.layout_fn(rng, self.objects)
        return {"poses": scatter(rng, self.objects)}

    def instruction(self, layout: dict) -> str:
        return self.instruction_fn(layout)

    def goal(self, scene: SceneView, layout: dict) -> bool:
        """Whether the goal state holds at this instant (the env counts the consecutive steps)."""
        return bool(self.goal_fn(scene, layout))

    def track(self, scene: SceneView, layout: dict) -> None:
        if self.track_fn is not None:
            self.track_fn(scene, layout)

    def appearance(self, step: int, layout: dict) -> dict[str, str]:
        return self.appearance_fn(step, layout) if self.appearance_fn is not None else {}


def scatter(rng: np.random.Generator, objects, fixed: dict | None = None, tries: int = 2000) -> dict:
    """Non-overlapping (x, y, yaw) for every object not in ``fixed``, by rejection sampling."""
    poses = dict(fixed or {})
    for obj in objects:
        if obj.name in poses:
            continue
        for _ in range(tries):
            x, y = rng.uniform(*WORKSPACE_X), rng.uniform(*WORKSPACE_Y)
            ok = all(
                np.hypot(x - p[0], y - p[1]) > _FOOTPRINT[obj.kind] + _FOOTPRINT[_kind(objects, n)]
                for n, p in poses.items()
            )
            if ok:
                yaw = rng.uniform(-np.pi / 4, np.pi / 4) if obj.kind == "cube" else 0.0
                poses[obj.name] = (float(x), float(y), float(yaw))
                break
        else:
            raise RuntimeError(f"could not place {obj.name!r} without overlap after {tries} tries")
    return poses


def _kind(objects, name):
    return next(o.kind for o in objects if o.name == name)


# --- goal predicates (instantaneous; the env requires SUCCESS_STEPS in a row) --------------------


def _inside_xy(scene: SceneView, obj: str, container: str, radius: float) -> bool:
    p, c = scene.position(obj), scene.position(container)
    return bool(np.hypot(*(p[:2] - c[:2])) < radius)


def settled(scene: SceneView, obj: str) -> bool:
    """At rest (slower than 1 cm/s) and not touched by the fingers."""
    return not scene.touching_gripper(obj) and scene.speed(obj) < SETTLED_SPEED


def on_table(scene: SceneView, obj: str, half: float = CUBE_HALF) -> bool:
    return bool(abs(scene.position(obj)[2] - half) < ON_TABLE_TOL)


def upright(scene: SceneView, obj: str) -> bool:
    return bool(scene.up_axis(obj)[2] > UPRIGHT_COS)


def in_bowl(scene: SceneView, obj: str, bowl: str, half: float = CUBE_HALF) -> bool:
    """Inside the bowl's wall, down on its floor, at rest and released."""
    return (
        _inside_xy(scene, obj, bowl, BOWL_RADIUS - 0.015)
        and scene.position(obj)[2] < half + 0.03
        and settled(scene, obj)
    )


def on_plate(scene: SceneView, obj: str, plate: str, half: float = CUBE_HALF, *, mug: bool = False) -> bool:
    """On the plate (resting on it, not hovering), at rest, released; a mug also upright."""
    z = scene.position(obj)[2]
    return (
        _inside_xy(scene, obj, plate, PLATE_RADIUS - 0.01)
        and half + 0.005 < z < half + 0.03
        and (not mug or upright(scene, obj))
        and settled(scene, obj)
    )


def stacked(scene: SceneView, top: str, bottom: str) -> bool:
    """``top`` centred on ``bottom`` (within 1.2 cm), both at rest and released."""
    p, q = scene.position(top), scene.position(bottom)
    return (
        bool(np.hypot(*(p[:2] - q[:2])) < STACK_XY_TOL and abs(p[2] - q[2] - 2 * CUBE_HALF) < 0.008)
        and settled(scene, top)
        and settled(scene, bottom)
    )


def lifted_and_held(scene: SceneView, obj: str, half: float = CUBE_HALF) -> bool:
    """Bottom face at least :data:`LIFT_HEIGHT` above the table, held between both fingers."""
    return bool(scene.position(obj)[2] - half >= LIFT_HEIGHT) and scene.held(obj)


def in_region(scene: SceneView, obj: str, region: str) -> bool:
    """Centre inside the square, on the table, at rest, released."""
    d = np.abs(scene.position(obj)[:2] - scene.position(region)[:2])
    return bool((d < REGION_HALF).all()) and on_table(scene, obj) and settled(scene, obj)


def returned(scene: SceneView, obj: str, start_xy, tol: float = RETURN_XY_TOL) -> bool:
    p = scene.position(obj)
    return bool(np.hypot(p[0] - start_xy[0], p[1] - start_xy[1]) < tol) and on_table(scene, obj) and settled(scene, obj)


# --- task catalogue ---------------------------------------------------------------------------


def _o(name, kind, color):
    return ObjectSpec(name, kind, color)


def _pick_cube() -> Task:
    return Task(
        name="PickCube",
        objects=(_o("red_cube", "cube", "red"), _o("green_cube", "cube", "green")),
        instruction_fn=lambda lay: "pick up the red cube",
        goal_fn=lambda s, lay: lifted_and_held(s, "red_cube"),
        max_steps=90,
        description="lift the named cube 10 cm off the table and hold it",
    )


def _place(name, obj, kind_to, target, color_to, desc, extra=(), max_steps=170):
    obj_kind = "mug" if "mug" in obj else "cube"
    half = MUG_HALF_HEIGHT if obj_kind == "mug" else CUBE_HALF
    obj_color = obj.split("_")[0]
    objs = (_o(obj, obj_kind, obj_color), _o(target, kind_to, color_to)) + tuple(extra)
    if kind_to == "bowl":
        goal = lambda s, lay: in_bowl(s, obj, target, half)  # noqa: E731
    else:
        goal = lambda s, lay: on_plate(s, obj, target, half, mug=obj_kind == "mug")  # noqa: E731
    return Task(
        name=name,
        objects=objs,
        instruction_fn=lambda lay: (
            f"put the {obj_color} {obj_kind} {'in' if kind_to == 'bowl' else 'on'} the {color_to} {kind_to}"
        ),
        goal_fn=goal,
        max_steps=max_steps,
        description=desc,
    )


def _stack() -> Task:
    objs = (_o("red_cube", "cube", "red"), _o("blue_cube", "cube", "blue"), _o("yellow_cube", "cube", "yellow"))
    return Task(
        name="StackCubes",
        objects=objs,
        instruction_fn=lambda lay: "stack the red cube on the blue cube",
        goal_fn=lambda s, lay: stacked(s, "red_cube", "blue_cube"),
        max_steps=170,
        description="stack one cube on another",
    )


def _push() -> Task:
    objs = (_o("yellow_cube", "cube", "yellow"), _o("target", "region", "green"))

    def layout(rng, objects):
        # keep the push short and in front of the cube so the expert never sweeps the arm sideways
        for _ in range(1000):
            poses = scatter(rng, objects)
            c, r = np.array(poses["yellow_cube"][:2]), np.array(poses["target"][:2])
            if 0.12 < np.linalg.norm(c - r) < 0.3:
                x, y, _ = poses["yellow_cube"]
                poses["yellow_cube"] = (x, y, 0.0)
                return {"poses": poses}
        raise RuntimeError("PushCube: no layout found")

    return Task(
        name="PushCube",
        objects=objs,
        instruction_fn=lambda lay: "push the yellow cube onto the green square",
        goal_fn=lambda s, lay: in_region(s, "yellow_cube", "target"),
        layout_fn=layout,
        max_steps=190,
        description="push a cube into a marked region with a closed gripper",
    )


def _bowl_beside_plate() -> Task:
    objs = (
        _o("red_cube", "cube", "red"),
        _o("bowl_a", "bowl", "blue"),
        _o("bowl_b", "bowl", "blue"),
        _o("plate", "plate", "white"),
    )

    def layout(rng, objects):
        # a row bowl - plate - bowl along y, in random order of sides, and the cube elsewhere
        x = rng.uniform(0.52, 0.62)
        yc = rng.uniform(-0.04, 0.04)
        gap = 0.18
        poses = {"plate": (x, yc, 0.0), "bowl_a": (x + rng.uniform(-0.03, 0.03), yc + gap, 0.0)}
        poses["bowl_b"] = (x + rng.uniform(-0.03, 0.03), yc - gap, 0.0)
        side = str(rng.choice(["left", "right"]))
        for _ in range(1000):
            cx, cy = rng.uniform(0.36, 0.42), rng.uniform(-0.2, 0.2)
            if all(np.hypot(cx - p[0], cy - p[1]) > 0.12 for p in poses.values()):
                break
        poses["red_cube"] = (float(cx), float(cy), float(rng.uniform(-np.pi / 4, np.pi / 4)))
        # "left" is +y in the robot's base frame (seen from behind the robot, facing +x)
        target = "bowl_a" if side == "left" else "bowl_b"
        return {"poses": poses, "side": side, "target": target}

    return Task(
        name="CubeInBowlBesidePlate",
        objects=objs,
        instruction_fn=lambda lay: f"put the red cube in the bowl {lay['side']} of the plate",
        goal_fn=lambda s, lay: in_bowl(s, "red_cube", lay["target"]),
        layout_fn=layout,
        max_steps=170,
        description="spatial relation: two identical bowls, the plate between them disambiguates",
    )


def _nearest_cube() -> Task:
    objs = (_o("red_cube", "cube", "red"), _o("yellow_cube", "cube", "yellow"), _o("bowl", "bowl", "green"))

    def layout(rng, objects):
        for _ in range(1000):
            poses = scatter(rng, objects)
            dr, dy = np.hypot(*poses["red_cube"][:2]), np.hypot(*poses["yellow_cube"][:2])
            if abs(dr - dy) > 0.05:  # unambiguous
                target = "red_cube" if dr < dy else "yellow_cube"
                return {"poses": poses, "target": target}
        raise RuntimeError("NearestCube: no layout found")

    return Task(
        name="NearestCubeInBowl",
        objects=objs,
        instruction_fn=lambda lay: "put the cube closest to the robot in the green bowl",
        goal_fn=lambda s, lay: in_bowl(s, lay["target"], "bowl"),
        layout_fn=layout,
        max_steps=170,
        description="spatial relation: distance to the robot picks the object",
    )


def _return_cube() -> Task:
    objs = (_o("red_cube", "cube", "red"), _o("plate", "plate", "white"), _o("green_cube", "cube", "green"))

    def layout(rng, objects):
        poses = scatter(rng, objects)
        return {"poses": poses, "start": list(poses["red_cube"][:2]), "placed": False}

    def track(s, lay):
        if not lay["placed"] and on_plate(s, "red_cube", "plate"):
            lay["placed"] = True

    return Task(
        name="ReturnCube",
        objects=objs,
        instruction_fn=lambda lay: "move the red cube onto the plate, then put it back where it was",
        goal_fn=lambda s, lay: lay["placed"] and returned(s, "red_cube", lay["start"]),
        layout_fn=layout,
        track_fn=track,
        max_steps=320,
        description="history: the start spot is unmarked once the cube has left it",
        needs_memory=True,
    )


def _lit_bowl() -> Task:
    objs = (_o("red_cube", "cube", "red"), _o("bowl_a", "bowl", "blue"), _o("bowl_b", "bowl", "blue"))

    def layout(rng, objects):
        poses = scatter(rng, objects)
        return {"poses": poses, "target": str(rng.choice(["bowl_a", "bowl_b"]))}

    return Task(
        name="LitBowl",
        objects=objs,
        instruction_fn=lambda lay: "put the red cube in the bowl that was lit",
        goal_fn=lambda s, lay: in_bowl(s, "red_cube", lay["target"]),
        layout_fn=layout,
        appearance_fn=lambda step, lay: {lay["target"]: "yellow"} if step < CUE_STEPS else {},
        max_steps=170,
        description="history: the cue (a lit bowl) is gone after 1 s; both bowls then look alike",
        needs_memory=True,
    )


def make_tasks() -> dict[str, Task]:
    tasks = [
        _pick_cube(),
        _place(
            "CubeInBowl",
            "red_cube",
            "bowl",
            "bowl",
            "blue",
            "put a cube in a bowl",
            (_o("green_cube", "cube", "green"),),
        ),
        _place(
            "CubeOnPlate",
            "green_cube",
            "plate",
            "plate",
            "white",
            "put a cube on a plate",
            (_o("red_cube", "cube", "red"),),
        ),
        _place(
            "MugOnPlate",
            "purple_mug",
            "plate",
            "plate",
            "white",
            "put a mug on a plate",
            (_o("blue_cube", "cube", "blue"),),
        ),
        _stack(),
        _push(),
        _bowl_beside_plate(),
        _nearest_cube(),
        _return_cube(),
        _lit_bowl(),
    ]
    return {t.name: t for t in tasks}


TASKS = make_tasks()
