"""Scripted experts: follow a task's waypoints with a proportional end-effector controller.

The expert reads privileged simulator state (object positions) through the env's SceneView,
so it is an upper bound for learned policies. It is a policy in the MV-Bench sense:
``reset()`` and ``act(observation, instruction) -> action``.
"""

from __future__ import annotations

import numpy as np

from envs.control import rotation_error
from envs.robot import EE_DOWN

STALL_STEPS = 30  # steps at one closed-gripper waypoint before the expert gives up on it and replans
MAX_REPLANS = 20  # closed-loop retries (push segments, re-grasps) per episode
GAIN = 1.0  # fraction of the remaining distance commanded per step (then clipped to the limit)


class ScriptedExpert:
    """Waypoint-following expert for one :class:`envs.env.TabletopEnv` (unwrapped)."""

    def __init__(self, env):
        self.env = env.unwrapped
        self.reset()

    def reset(self) -> None:
        self._plan = None
        self._i = 0
        self._held = 0
        self._replans = 0

    def act(self, observation=None, instruction: str | None = None) -> np.ndarray:
        env = self.env
        if self._plan is None:
            self._plan = env.task.plan(env, env.layout)
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
                if not env.task.success(env, env.layout) and self._replans < MAX_REPLANS:
                    # plan finished without success: look at the scene again and retry
                    self._plan = env.task.plan(env, env.layout)
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
