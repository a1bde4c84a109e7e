"""Tabletop tasks in the spirit of LIBERO-Spatial: objects, randomised layouts, instructions,
success predicates and scripted-expert plans.

A task never touches MuJoCo directly: it reads a :class:`SceneView` (object positions, contacts)
and returns waypoints for the expert. Layouts are sampled from the env's seeded generator.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

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


class SceneView:
    """What tasks may read of the simulation (implemented by the env)."""

    def position(self, name: str) -> np.ndarray:  # [3] metres, base frame
        raise NotImplementedError

    def touching_gripper(self, name: str) -> bool:
        raise NotImplementedError

    def speed(self, name: str) -> float:  # m/s of a movable object
        raise NotImplementedError

    def yaw(self, name: str) -> float:  # radians about z
        raise NotImplementedError

    def ee_position(self) -> np.ndarray:  # [3] metres, the end-effector site
        raise NotImplementedError


@dataclass(frozen=True)
class Waypoint:
    """Move the end-effector to ``pos`` (m) with the gripper command (-1 open, +1 closed).

    The expert advances once within ``tol`` metres and after at least ``hold`` steps here.
    """

    pos: tuple[float, float, float]
    gripper: float
    tol: float = 0.01
    hold: int = 0
    yaw: float = 0.0  # gripper yaw about the base z axis, radians
    speed: float | None = None  # max metres per step toward this waypoint (None: the action limit)
    carry: str | None = None  # object held in the hand: pos is where *its centre* should go


@dataclass
class Task:
    """A task: objects, how to lay them out, what to say, when it is done, how an expert does it."""

    name: str
    objects: tuple[ObjectSpec, ...]
    instruction_fn: Callable[[dict], str]
    success_fn: Callable[[SceneView, dict], bool]
    plan_fn: Callable[[SceneView, dict], list[Waypoint]]
    layout_fn: Callable[[np.random.Generator, tuple[ObjectSpec, ...]], dict] | None = None
    max_steps: int = 120
    description: str = ""
    extras: dict = field(default_factory=dict)

    def sample_layout(self, rng: np.random.Generator) -> dict:
        """Return ``{"poses": {name: (x, y, yaw)}, ...}`` plus any task-specific choices."""
        if self.layout_fn is not None:
            return self.layout_fn(rng, self.objects)
        return {"poses": scatter(rng, self.objects)}

    def instruction(self, layout: dict) -> str:
        return self.instruction_fn(layout)

    def success(self, scene: SceneView, layout: dict) -> bool:
        return bool(self.success_fn(scene, layout))

    def plan(self, scene: SceneView, layout: dict) -> list[Waypoint]:
        return self.plan_fn(scene, layout)


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


# --- predicates -------------------------------------------------------------------------------


def _inside_xy(scene: SceneView, obj: str, container: str, radius: float) -> bool:
    p, c = scene.position(obj), scene.position(container)
    return bool(np.hypot(*(p[:2] - c[:2])) < radius)


def _resting(scene: SceneView, obj: str) -> bool:
    return not scene.touching_gripper(obj) and scene.speed(obj) < 0.05


def in_bowl(scene, obj, bowl, half_height=CUBE_HALF):
    return (
        _inside_xy(scene, obj, bowl, BOWL_RADIUS - 0.015)
        and scene.position(obj)[2] < half_height + 0.03
        and _resting(scene, obj)
    )


def on_plate(scene, obj, plate, half_height=CUBE_HALF):
    z = scene.position(obj)[2]
    return (
        _inside_xy(scene, obj, plate, PLATE_RADIUS - 0.01)
        and half_height + 0.005 < z < half_height + 0.03
        and _resting(scene, obj)
    )


def stacked(scene, top, bottom):
    p, q = scene.position(top), scene.position(bottom)
    return bool(np.hypot(*(p[:2] - q[:2])) < 0.02 and abs(p[2] - q[2] - 2 * CUBE_HALF) < 0.01) and _resting(scene, top)


def lifted(scene, obj, height=0.1):
    return bool(scene.position(obj)[2] > height)


def in_region(scene, obj, region):
    d = np.abs(scene.position(obj)[:2] - scene.position(region)[:2])
    return bool((d < REGION_HALF).all())


# --- expert plans -----------------------------------------------------------------------------

HOVER = 0.15  # end-effector site height for transit (fingertips ~5 cm lower)
TIP_BELOW_SITE = 0.05  # the fingertips reach this far below the Panda's end_effector site
GRASP_DEPTH = 0.033  # site height above an object's centre when grasping: pads span the centre
PUSH_SEGMENT = 0.06  # metres pushed before the expert looks again
CARRY_Z = 0.11  # height of a carried object's bottom in transit: clears bowl walls and cubes


def pick_and_place(scene: SceneView, obj: str, place_xy, place_z: float, half: float = CUBE_HALF) -> list[Waypoint]:
    """Waypoints: above obj, down, close, lift, carry over the target, lower, open, retreat.

    ``place_z`` is where the *object's centre* should be released; the carry waypoints aim the
    held object (not the hand), so a grasp that slipped in the fingers is corrected for.
    """
    p = scene.position(obj)
    gx, gy = p[0], p[1]
    tx, ty = place_xy
    grasp_z = p[2] + GRASP_DEPTH  # end-effector site above the object's centre
    # cubes are 90-degree symmetric: grasp across the faces with the smallest gripper turn
    yaw = _cube_yaw(scene, obj) if abs(half - CUBE_HALF) < 1e-9 else 0.0
    return [
        Waypoint((gx, gy, HOVER), -1, tol=0.005, hold=3, yaw=yaw),  # settle before going down
        Waypoint((gx, gy, grasp_z), -1, tol=0.006, yaw=yaw, speed=0.02),
        Waypoint((gx, gy, grasp_z), 1, tol=0.02, hold=6, yaw=yaw),
        Waypoint((gx, gy, HOVER + 0.03), 1, tol=0.015, yaw=yaw),
        Waypoint((tx, ty, CARRY_Z + half), 1, tol=0.01, yaw=yaw, carry=obj),
        Waypoint((tx, ty, place_z), 1, tol=0.005, yaw=yaw, carry=obj, speed=0.012),
        Waypoint((tx, ty, place_z), -1, tol=0.03, hold=5, yaw=yaw, carry=obj),
        Waypoint((tx, ty, HOVER + 0.05), -1, tol=0.02, yaw=yaw),
    ]


def _cube_yaw(scene: SceneView, obj: str) -> float:
    return (scene.yaw(obj) + np.pi / 4) % (np.pi / 2) - np.pi / 4


def push_plan(scene: SceneView, obj: str, region: str) -> list[Waypoint]:
    """One closed-loop push segment toward the region centre.

    If the hand is already low and on the line behind the object it pushes up to PUSH_SEGMENT
    further; otherwise it lifts, moves behind the object, lowers, then pushes. The expert replans
    after each segment, so drift of the object off the line is corrected.
    """
    p, r = scene.position(obj), scene.position(region)
    d = r[:2] - p[:2]
    dist = float(np.linalg.norm(d))
    u = d / max(dist, 1e-6)
    behind = p[:2] - u * (CUBE_HALF + 0.03)
    goal = p[:2] + u * min(PUSH_SEGMENT, max(dist - 0.01, 0.0))
    z = TIP_BELOW_SITE + 0.01  # fingertips 1 cm above the table: low enough not to ride over the cube
    # turn the hand so the closed fingers' wide side (3.7 cm, across the slide axis) pushes
    yaw = float((np.arctan2(u[1], u[0]) + np.pi / 2) % np.pi - np.pi / 2)
    ee = scene.ee_position()
    rel = ee[:2] - p[:2]
    along, across = float(rel @ u), float(abs(rel[0] * u[1] - rel[1] * u[0]))
    aligned = ee[2] < z + 0.015 and across < 0.012 and -(CUBE_HALF + 0.06) < along < -CUBE_HALF
    push = Waypoint((goal[0] - u[0] * (CUBE_HALF + 0.012), goal[1] - u[1] * (CUBE_HALF + 0.012), z), 1, tol=0.008,
                    speed=0.012, yaw=yaw)  # fmt: skip
    if aligned:
        return [push]
    return [
        Waypoint((ee[0], ee[1], HOVER), 1, tol=0.02, yaw=yaw),
        Waypoint((behind[0], behind[1], HOVER), 1, tol=0.01, yaw=yaw),
        Waypoint((behind[0], behind[1], z), 1, tol=0.006, yaw=yaw),
        push,
    ]


# --- task catalogue ---------------------------------------------------------------------------


def _o(name, kind, color):
    return ObjectSpec(name, kind, color)


def _pick_cube() -> Task:
    objs = (_o("red_cube", "cube", "red"), _o("green_cube", "cube", "green"))
    return Task(
        name="PickCube",
        objects=objs,
        instruction_fn=lambda lay: "pick up the red cube",
        success_fn=lambda s, lay: lifted(s, "red_cube"),
        plan_fn=lambda s, lay: (
            pick_and_place(s, "red_cube", s.position("red_cube")[:2], 0.2)[:4]
            + [Waypoint(tuple(s.position("red_cube")[:2]) + (0.25,), 1, tol=0.01, yaw=_cube_yaw(s, "red_cube"))]
        ),
        max_steps=80,
        description="lift the named cube 10 cm off the table",
    )


def _place(name, obj, kind_to, target, color_to, desc, extra=(), max_steps=150):
    obj_kind = "mug" if "mug" in obj else "cube"
    half = MUG_HALF_HEIGHT if obj_kind == "mug" else CUBE_HALF
    obj_color = obj.split("_")[0]
    objs = (_o(obj, obj_kind, obj_color), _o(target, kind_to, color_to)) + tuple(extra)
    pred = in_bowl if kind_to == "bowl" else on_plate
    place_z = half + (0.018 if kind_to == "bowl" else 0.02)  # a little above the bowl floor / plate
    return Task(
        name=name,
        objects=objs,
        instruction_fn=lambda lay: (
            f"put the {obj_color} {obj_kind} {'in' if kind_to == 'bowl' else 'on'} the {color_to} {kind_to}"
        ),
        success_fn=lambda s, lay: pred(s, obj, target, half),
        plan_fn=lambda s, lay: pick_and_place(s, obj, s.position(target)[:2], place_z, half),
        max_steps=max_steps,
        description=desc,
    )


def _stack() -> Task:
    objs = (_o("red_cube", "cube", "red"), _o("blue_cube", "cube", "blue"), _o("yellow_cube", "cube", "yellow"))
    return Task(
        name="StackCubes",
        objects=objs,
        instruction_fn=lambda lay: "stack the red cube on the blue cube",
        success_fn=lambda s, lay: stacked(s, "red_cube", "blue_cube"),
        plan_fn=lambda s, lay: pick_and_place(s, "red_cube", s.position("blue_cube")[:2], 3 * CUBE_HALF + 0.006),
        max_steps=150,
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
        success_fn=lambda s, lay: in_region(s, "yellow_cube", "target"),
        plan_fn=lambda s, lay: push_plan(s, "yellow_cube", "target"),
        layout_fn=layout,
        max_steps=160,
        description="push a cube into a marked region with a closed gripper",
    )


def _bowl_left_of_plate() -> Task:
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
        success_fn=lambda s, lay: in_bowl(s, "red_cube", lay["target"]),
        plan_fn=lambda s, lay: pick_and_place(s, "red_cube", s.position(lay["target"])[:2], CUBE_HALF + 0.018),
        layout_fn=layout,
        max_steps=150,
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
        success_fn=lambda s, lay: in_bowl(s, lay["target"], "bowl"),
        plan_fn=lambda s, lay: pick_and_place(s, lay["target"], s.position("bowl")[:2], CUBE_HALF + 0.018),
        layout_fn=layout,
        max_steps=150,
        description="spatial relation: distance to the robot picks the object",
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
        _bowl_left_of_plate(),
        _nearest_cube(),
    ]
    return {t.name: t for t in tasks}


TASKS = make_tasks()
