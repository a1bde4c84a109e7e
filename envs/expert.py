"""Scripted experts: per-task waypoint plans, followed with a proportional end-effector controller.

The expert reads privileged simulator state (object positions, the task's hidden layout choices
such as which bowl was lit) through the env's SceneView, so it is an upper bound for learned
policies. It is a policy in the MV-Bench sense: ``reset()`` and
``act(observation, instruction) -> action``.

Plans are closed-loop at the level of segments: when a plan ends and the task's goal does not
hold, the expert looks at the scene again and replans (re-grasps a dropped object, pushes the next
segment, moves on to the next phase of a multi-phase task).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from envs.control import rotation_error
from envs.robot import EE_DOWN
from envs.scene import CUBE_HALF, MUG_HALF_HEIGHT, REGION_HALF
from envs.tasks import TASKS, SceneView

STALL_STEPS = 30  # steps at one closed-gripper waypoint before the expert gives up on it and replans
MAX_REPLANS = 20  # closed-loop retries (push segments, re-grasps, task phases) per episode
GAIN = 1.0  # fraction of the remaining distance commanded per step (then clipped to the limit)

HOVER = 0.15  # end-effector site height for transit (fingertips ~5 cm lower)
HOME_EE = (0.5, 0.0, 0.25)  # the end-effector site at the robot's home pose
TIP_BELOW_SITE = 0.05  # the fingertips reach this far below the Panda's end_effector site
GRASP_DEPTH = 0.033  # site height above an object's centre when grasping: pads span the centre
PUSH_SEGMENT = 0.06  # metres pushed before the expert looks again
CARRY_Z = 0.11  # height of a carried object's bottom in transit: clears bowl walls and cubes
SETTLE_HOLD = 8  # steps the hand waits after letting go, so the goal is judged on a settled scene
BOWL_PLACE_Z = CUBE_HALF + 0.018  # release height of a cube's centre over a bowl floor


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


def _cube_yaw(scene: SceneView, obj: str) -> float:
    """Cubes are 90-degree symmetric: the yaw that grasps across faces with the smallest turn."""
    return (scene.yaw(obj) + np.pi / 4) % (np.pi / 2) - np.pi / 4


def grasp(scene: SceneView, obj: str, half: float = CUBE_HALF) -> tuple[list[Waypoint], float]:
    """Waypoints: above obj (settle), down, close, lift. Returns them and the grasp yaw."""
    p = scene.position(obj)
    gx, gy = p[0], p[1]
    grasp_z = p[2] + GRASP_DEPTH  # end-effector site above the object's centre
    yaw = _cube_yaw(scene, obj) if abs(half - CUBE_HALF) < 1e-9 else 0.0
    return [
        Waypoint((gx, gy, HOVER), -1, tol=0.005, hold=3, yaw=yaw),  # settle before going down
        Waypoint((gx, gy, grasp_z), -1, tol=0.006, yaw=yaw, speed=0.02),
        Waypoint((gx, gy, grasp_z), 1, tol=0.02, hold=6, yaw=yaw),
        Waypoint((gx, gy, HOVER + 0.03), 1, tol=0.015, yaw=yaw),
    ], yaw


def pick_and_place(scene: SceneView, obj: str, place_xy, place_z: float, half: float = CUBE_HALF) -> list[Waypoint]:
    """Grasp, carry over the target, lower, open, retreat and wait for the object to settle.

    ``place_z`` is where the *object's centre* should be released; the carry waypoints aim the
    held object (not the hand), so a grasp that slipped in the fingers is corrected for.
    """
    tx, ty = place_xy
    plan, yaw = grasp(scene, obj, half)
    return plan + [
        Waypoint((tx, ty, CARRY_Z + half), 1, tol=0.01, yaw=yaw, carry=obj),
        Waypoint((tx, ty, place_z), 1, tol=0.005, yaw=yaw, carry=obj, speed=0.012),
        Waypoint((tx, ty, place_z), -1, tol=0.03, hold=5, yaw=yaw, carry=obj),
        Waypoint((tx, ty, HOVER + 0.05), -1, tol=0.02, hold=SETTLE_HOLD, yaw=yaw),
    ]


def pick_up(scene: SceneView, obj: str) -> list[Waypoint]:
    """Grasp and lift to 25 cm, then hold there."""
    plan, yaw = grasp(scene, obj)
    p = scene.position(obj)
    return plan + [Waypoint((p[0], p[1], 0.25), 1, tol=0.01, yaw=yaw)]


def push_plan(scene: SceneView, obj: str, region: str) -> list[Waypoint]:
    """One closed-loop push segment toward the region centre, or a retreat once it is there.

    If the hand is already low and on the line behind the object it pushes up to PUSH_SEGMENT
    further; otherwise it lifts, moves behind the object, lowers, then pushes. The expert replans
    after each segment, so drift of the object off the line is corrected. Once the object is well
    inside the region the hand backs away and lifts, so the object is left at rest, untouched.
    """
    p, r = scene.position(obj), scene.position(region)
    ee = scene.ee_position()
    if (np.abs(p[:2] - r[:2]) < REGION_HALF - 0.015).all():
        away = ee[:2] - p[:2]
        away = away / max(float(np.linalg.norm(away)), 1e-6)
        back = ee[:2] + 0.04 * away
        return [
            Waypoint((back[0], back[1], ee[2]), 1, tol=0.01),
            Waypoint((back[0], back[1], HOVER), 1, tol=0.02, hold=SETTLE_HOLD),
        ]
    d = r[:2] - p[:2]
    dist = float(np.linalg.norm(d))
    u = d / max(dist, 1e-6)
    behind = p[:2] - u * (CUBE_HALF + 0.03)
    goal = p[:2] + u * min(PUSH_SEGMENT, max(dist - 0.01, 0.0))
    z = TIP_BELOW_SITE + 0.01  # fingertips 1 cm above the table: low enough not to ride over the cube
    # turn the hand so the closed fingers' wide side (3.7 cm, across the slide axis) pushes
    yaw = float((np.arctan2(u[1], u[0]) + np.pi / 2) % np.pi - np.pi / 2)
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


def return_cube_plan(scene: SceneView, layout: dict) -> list[Waypoint]:
    """Phase 1: cube onto the plate. Phase 2 (once it rested there): back to its start, then home."""
    if not layout["placed"]:
        return pick_and_place(scene, "red_cube", scene.position("plate")[:2], CUBE_HALF + 0.02)
    plan = pick_and_place(scene, "red_cube", layout["start"], CUBE_HALF + 0.004)
    return plan + [Waypoint(HOME_EE, -1, tol=0.01, yaw=0.0)]


Plan = Callable[[SceneView, dict], list[Waypoint]]

#: How the scripted expert solves each task: ``(scene, layout) -> waypoints``.
PLANS: dict[str, Plan] = {
    "PickCube": lambda s, lay: pick_up(s, "red_cube"),
    "CubeInBowl": lambda s, lay: pick_and_place(s, "red_cube", s.position("bowl")[:2], BOWL_PLACE_Z),
    "CubeOnPlate": lambda s, lay: pick_and_place(s, "green_cube", s.position("plate")[:2], CUBE_HALF + 0.02),
    "MugOnPlate": lambda s, lay: pick_and_place(
        s, "purple_mug", s.position("plate")[:2], MUG_HALF_HEIGHT + 0.02, MUG_HALF_HEIGHT
    ),
    "StackCubes": lambda s, lay: pick_and_place(s, "red_cube", s.position("blue_cube")[:2], 3 * CUBE_HALF + 0.006),
    "PushCube": lambda s, lay: push_plan(s, "yellow_cube", "target"),
    "CubeInBowlBesidePlate": lambda s, lay: pick_and_place(s, "red_cube", s.position(lay["target"])[:2], BOWL_PLACE_Z),
    "NearestCubeInBowl": lambda s, lay: pick_and_place(s, lay["target"], s.position("bowl")[:2], BOWL_PLACE_Z),
    "ReturnCube": return_cube_plan,
    "LitBowl": lambda s, lay: pick_and_place(s, "red_cube", s.position(lay["target"])[:2], BOWL_PLACE_Z),
}
_missing = set(TASKS) - set(PLANS)
assert not _missing, f"tasks without an expert plan: {sorted(_missing)}"


class ScriptedExpert:
    """Waypoint-following expert for one :class:`envs.env.TabletopEnv` (unwrapped)."""

    def __init__(self, env):
        self.env = env.unwrapped
        if self.env.task.name not in PLANS:
            raise ValueError(f"task: no expert plan for {self.env.task.name!r}")
        self.reset()

    def reset(self) -> None:
        self._plan = None
        self._i = 0
        self._held = 0
        self._replans = 0

    def _make_plan(self) -> list[Waypoint]:
        return PLANS[self.env.task.name](self.env, self.env.layout)

    def act(self, observation=None, instruction: str | None = None) -> np.ndarray:
        env = self.env
        if self._plan is None:
            self._plan = self._make_plan()
        pos, rot = env.controller.ee_pose(env.data)
        while True:
            wp = self._plan[self._i]
            goal = np.asarray(wp.pos, dtype=np.float64)
            if wp.carry is not None:  # aim the held object, wherever it sits in the hand
                goal += pos - env.position(wp.carry)
            err = goal - pos
            stalled = self._held > STALL_STEPS and wp.gripper > 0 and wp.carry is None
            # the object we are carrying is no longer in the hand: start over from the scene
            stalled |= wp.carry is not None and wp.gripper > 0 and not env.touching_gripper(wp.carry)
            if stalled or (np.linalg.norm(err) < wp.tol and self._held >= wp.hold):
                if self._i < len(self._plan) - 1 and not stalled:
                    self._i += 1
                    self._held = 0
                    continue
                if not env.task.goal(env, env.layout) and self._replans < MAX_REPLANS:
                    # plan finished and the goal does not hold: look at the scene again
                    self._plan = self._make_plan()
                    self._i, self._held = 0, 0
                    self._replans += 1
                    continue
            break
        self._held += 1
        lim = env.controller.limits
        dpos = GAIN * err
        n = np.linalg.norm(dpos)
        vmax = lim.max_translation if wp.speed is None else min(wp.speed, lim.max_translation)
        if n > vmax:
            dpos *= vmax / n
        c, s = np.cos(wp.yaw), np.sin(wp.yaw)
        target_rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]) @ EE_DOWN
        drot = GAIN * rotation_error(target_rot, rot)
        n = np.linalg.norm(drot)
        if n > lim.max_rotation:
            drot *= lim.max_rotation / n
        return np.concatenate([dpos, drot, [wp.gripper]]).astype(np.float32)
