"""The gymnasium environment: one task, a camera rig, Panda end-effector control.

Observation (``obs_mode="rgbd"``)::

    {"cameras": {<name>: {"rgb": uint8 [H, W, 3] upright,
                          "depth": float32 [H, W] metric planar metres, 0 = invalid,
                          "intrinsics": float32 [3, 3] K,
                          "extrinsics": float32 [4, 4] w2c, OpenCV axes}},
     "state": float32 [15]  ee position (3), ee quaternion wxyz (4), gripper width m (1), arm joints (7)}

``obs_mode="pointcloud"`` adds ``"points"`` float32 [N, 6] (xyz metres in the base frame, rgb in
[0, 1]) fused from all cameras; ``obs_mode="state"`` renders nothing (fast, for experts).
The intrinsics/extrinsics are exactly what :class:`worldline.Camera` takes.
"""

from __future__ import annotations

import copy
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
import torch
from gymnasium import spaces

from envs.cameras import CameraRig, CameraSpec, default_rig
from envs.control import ActionLimits, DLSController, rotation_error
from envs.profiles import RenderProfile, get_profile
from envs.rendering import MultiViewRenderer
from envs.robot import FINGER_JOINTS, HOME_QPOS
from envs.scene import COLORS, CUBE_HALF, MUG_HALF_HEIGHT, build_model
from envs.tasks import SUCCESS_STEPS, TASKS, SceneView, Task
from worldline.camera import Camera
from worldline.points import crop_to_box, fuse_rgbd, resample_points

OBS_MODES = ("rgbd", "pointcloud", "state")
STATE_DIM = 15
MAX_POS_LEAD = 0.05  # metres the commanded EE position may lead the measured one
MAX_ROT_LEAD = 0.3  # radians, likewise for orientation
WORKSPACE_BOX = ((0.15, -0.5, -0.01), (0.9, 0.5, 0.5))  # metres, base frame: where the EE may go


class TabletopEnv(gym.Env, SceneView):
    """Multi-view tabletop manipulation with a Franka Panda.

    Args:
        task: a task name from :data:`envs.tasks.TASKS` or a :class:`Task`.
        cameras: camera specs, or dicts of their fields (default: front, left, right and wrist).
        width, height: image size in pixels.
        obs_mode: ``"rgbd"``, ``"pointcloud"`` or ``"state"``.
        num_points: points in the fused cloud for ``obs_mode="pointcloud"``.
        render_mode: ``None`` or ``"rgb_array"`` (all cameras side by side).
        control_hz: policy rate; physics runs at 500 Hz underneath.
        render_profile: a name from :data:`envs.profiles.PROFILES` or a :class:`RenderProfile`
            (default ``"lowpoly"``). It never depends on the machine: a GPU box and a CPU box
            render the same images.
        low_poly, shadows, offsamples: override single fields of the profile (the result is a
            profile named ``"custom"``).
        privileged: add ``obs["expert_action"]`` [7], the scripted expert's action for this state.
            Only for reference upper bounds and data collection, where the policy is not learned
            (it lets the expert run inside vector-env workers).

    Examples:
        >>> import gymnasium, envs
        >>> env = gymnasium.make("MVBench/CubeInBowl-v0", width=96, height=96)  # doctest: +SKIP
        >>> obs, info = env.reset(seed=0)  # doctest: +SKIP
        >>> info["instruction"]  # doctest: +SKIP
        'put the red cube in the blue bowl'
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(
        self,
        task: str | Task = "CubeInBowl",
        cameras: tuple[CameraSpec | dict, ...] | None = None,
        width: int = 128,
        height: int = 128,
        obs_mode: str = "rgbd",
        num_points: int = 2048,
        render_mode: str | None = None,
        control_hz: float = 20.0,
        render_profile: str | RenderProfile | None = None,
        low_poly: bool | None = None,
        shadows: bool | None = None,
        offsamples: int | None = None,
        limits: ActionLimits | None = None,
        privileged: bool = False,
    ):
        if isinstance(task, str):
            if task not in TASKS:
                raise ValueError(f"task: unknown task {task!r}; known: {sorted(TASKS)}")
            task = TASKS[task]
        if obs_mode not in OBS_MODES:
            raise ValueError(f"obs_mode: expected one of {OBS_MODES}, got {obs_mode!r}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode: expected None or 'rgb_array', got {render_mode!r}")
        if not (1 <= control_hz <= 100):
            raise ValueError(f"control_hz: expected 1..100, got {control_hz}")
        profile = get_profile(render_profile)
        overrides = {"low_poly": low_poly, "shadows": shadows, "offsamples": offsamples}
        overrides = {k: v for k, v in overrides.items() if v is not None and v != getattr(profile, k)}
        if overrides:
            profile = RenderProfile(**{**profile.to_dict(), **overrides, "name": "custom"})
        self.render_profile = profile
        limits = ActionLimits() if limits is None else limits
        self.task = task
        if cameras is not None:
            cameras = tuple(CameraSpec(**c) if isinstance(c, dict) else c for c in cameras)
        self.rig = default_rig(width, height) if cameras is None else CameraRig(cameras, width, height)
        self.obs_mode = obs_mode
        self.num_points = num_points
        self.render_mode = render_mode
        self.model = build_model(
            task.objects, self.rig, low_poly=profile.low_poly, shadows=profile.shadows, offsamples=profile.offsamples
        )
        self.data = mujoco.MjData(self.model)
        self.n_substeps = max(1, round(1.0 / (control_hz * self.model.opt.timestep)))
        self.controller = DLSController(self.model, limits)
        self._renderer = MultiViewRenderer(self.model, self.rig, low_poly=profile.low_poly)
        self._obj_body = {o.name: mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_BODY, o.name) for o in task.objects}
        self._obj_geoms = {
            o.name: set(np.flatnonzero(self.model.geom_bodyid == self._obj_body[o.name]).tolist()) for o in task.objects
        }
        self._default_rgba = {
            o.name: self.model.geom_rgba[sorted(self._obj_geoms[o.name])].copy() for o in task.objects
        }
        finger_bodies = [
            self.model.jnt_bodyid[mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_JOINT, j)] for j in FINGER_JOINTS
        ]
        # one geom set per finger: "held" needs contact with both
        self._finger_sets = [set(np.flatnonzero(self.model.geom_bodyid == b).tolist()) for b in finger_bodies]
        self._finger_geoms = set().union(*self._finger_sets)
        self._finger_qadr = [
            self.model.jnt_qposadr[mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_JOINT, j)] for j in FINGER_JOINTS
        ]
        self._cam_ids = {n: mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_CAMERA, n) for n in self.rig.names}
        self._layout: dict = {}
        self.instruction = ""
        self._target_pos = np.zeros(3)
        self._target_rot = np.eye(3)
        self._gripper = -1.0
        self._t = 0  # control steps since reset
        self._streak = 0  # consecutive steps the task's goal has held
        self._colored: set[str] = set()

        high = np.array([limits.max_translation] * 3 + [limits.max_rotation] * 3 + [1.0], np.float32)
        self.action_space = spaces.Box(-high, high, (7,), np.float32)
        obs = {"state": spaces.Box(-np.inf, np.inf, (STATE_DIM,), np.float32)}
        if obs_mode != "state":
            h, w = height, width
            obs["cameras"] = spaces.Dict(
                {
                    n: spaces.Dict(
                        {
                            "rgb": spaces.Box(0, 255, (h, w, 3), np.uint8),
                            "depth": spaces.Box(0.0, np.inf, (h, w), np.float32),
                            "intrinsics": spaces.Box(-np.inf, np.inf, (3, 3), np.float32),
                            "extrinsics": spaces.Box(-np.inf, np.inf, (4, 4), np.float32),
                        }
                    )
                    for n in self.rig.names
                }
            )
        if obs_mode == "pointcloud":
            obs["points"] = spaces.Box(-np.inf, np.inf, (num_points, 6), np.float32)
        self.privileged = privileged
        self._expert = None
        if privileged:
            from envs.expert import ScriptedExpert

            obs["expert_action"] = self.action_space
            self._expert = ScriptedExpert(self)
        self.observation_space = spaces.Dict(obs)

    # -- SceneView ----------------------------------------------------------------------------

    def position(self, name: str) -> np.ndarray:
        return self.data.xpos[self._obj_body[name]].copy()

    def _fingers_touching(self, name: str) -> list[bool]:
        geoms = self._obj_geoms[name]
        hit = [False] * len(self._finger_sets)
        for c in self.data.contact[: self.data.ncon]:
            g1, g2 = int(c.geom1), int(c.geom2)
            other = g2 if g1 in geoms else g1 if g2 in geoms else None
            if other is not None:
                for i, fingers in enumerate(self._finger_sets):
                    hit[i] |= other in fingers
        return hit

    def touching_gripper(self, name: str) -> bool:
        return any(self._fingers_touching(name))

    def held(self, name: str) -> bool:
        return all(self._fingers_touching(name))

    def speed(self, name: str) -> float:
        vel = np.empty(6)  # [angular, linear] of the body frame's origin, world orientation
        mujoco.mj_objectVelocity(self.model, self.data, int(mujoco.mjtObj.mjOBJ_BODY), self._obj_body[name], vel, 0)
        return float(np.linalg.norm(vel[3:]))

    def up_axis(self, name: str) -> np.ndarray:
        return self.data.xmat[self._obj_body[name]].reshape(3, 3)[:, 2].copy()

    def ee_position(self) -> np.ndarray:
        return self.controller.ee_pose(self.data)[0]

    def yaw(self, name: str) -> float:
        r = self.data.xmat[self._obj_body[name]].reshape(3, 3)
        return float(np.arctan2(r[1, 0], r[0, 0]))

    # -- gym API ------------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Start an episode. ``options={"layout": layout}`` replays a layout (as returned by
        :attr:`layout` at the start of an episode) instead of sampling one from the seed."""
        super().reset(seed=seed)
        m, d = self.model, self.data
        mujoco.mj_resetData(m, d)
        self._layout = self.task.sample_layout(self.np_random)
        if options and options.get("layout") is not None:
            given = options["layout"]
            if (
                not isinstance(given, dict)
                or set(given) != set(self._layout)
                or set(given["poses"]) != set(self._layout["poses"])
            ):
                raise ValueError(
                    f"options['layout']: expected a {self.task.name} layout with keys {sorted(self._layout)} and poses "
                    f"for {sorted(self._layout['poses'])}"
                )
            self._layout = copy.deepcopy(given)
        for name, (x, y, yaw) in self._layout["poses"].items():
            body = self._obj_body[name]
            quat = np.array([np.cos(yaw / 2), 0, 0, np.sin(yaw / 2)])
            jnt = m.body_jntadr[body]
            if jnt >= 0:  # movable: free joint
                adr = m.jnt_qposadr[jnt]
                z = self._rest_height(name)
                d.qpos[adr : adr + 7] = [x, y, z, *quat]
            else:  # fixture
                m.body_pos[body] = [x, y, 0.0]
                m.body_quat[body] = quat
        d.qpos[self.controller.qadr] = HOME_QPOS
        d.qpos[self._finger_qadr] = 0.04
        d.ctrl[self.controller.arm_act] = HOME_QPOS
        d.ctrl[self.controller.finger_act] = 0.04
        mujoco.mj_forward(m, d)
        for _ in range(20):  # let objects settle on the table
            mujoco.mj_step(m, d)
        self._target_pos, self._target_rot = self.controller.ee_pose(d)
        self._gripper = -1.0
        self._t, self._streak = 0, 0
        self._apply_appearance()
        self.instruction = self.task.instruction(self._layout)
        if self._expert is not None:
            self._expert.reset()
        return self._observation(), self._info(clipped=False)

    def step(self, action):
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (7,):
            raise ValueError(f"action: expected shape (7,) = [dx, dy, dz, drx, dry, drz, gripper], got {a.shape}")
        if not np.isfinite(a).all():
            raise ValueError(f"action: contains NaN or inf: {a.tolist()}")
        a, clipped = self.controller.clip(a)
        ee_pos, ee_rot = self.controller.ee_pose(self.data)
        # integrate the command, but never let it run away from where the hand really is
        target = self._target_pos + a[:3]
        target = ee_pos + np.clip(target - ee_pos, -MAX_POS_LEAD, MAX_POS_LEAD)
        self._target_pos = np.clip(target, WORKSPACE_BOX[0], WORKSPACE_BOX[1])
        self._target_rot = self.controller.delta_rotation(self._target_rot, a[3:6])
        # same for orientation: keep the commanded rotation within MAX_ROT_LEAD of the real one
        lead = rotation_error(self._target_rot, ee_rot)
        n = np.linalg.norm(lead)
        if n > MAX_ROT_LEAD:
            self._target_rot = self.controller.delta_rotation(ee_rot, lead * (MAX_ROT_LEAD / n))
        self._gripper = float(a[6])
        self.controller.apply(self.data, self._target_pos, self._target_rot, self._gripper)
        mujoco.mj_step(self.model, self.data, nstep=self.n_substeps)
        self._t += 1
        self.task.track(self, self._layout)
        goal = self.task.goal(self, self._layout)
        self._streak = self._streak + 1 if goal else 0
        success = self._streak >= SUCCESS_STEPS
        self._apply_appearance()
        obs = self._observation()
        return obs, float(success), bool(success), False, self._info(clipped=clipped, success=success)

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        frames = self._renderer.render(self.data, depth=False)
        return np.concatenate([frames[n][0] for n in self.rig.names], axis=1)

    def close(self):
        self._renderer.close()

    # -- helpers ------------------------------------------------------------------------------

    @property
    def layout(self) -> dict:
        return self._layout

    def _apply_appearance(self) -> None:
        """Set object colours for the current step (time-dependent cues such as LitBowl's)."""
        wanted = self.task.appearance(self._t, self._layout)
        for name in self._colored - set(wanted):
            self.model.geom_rgba[sorted(self._obj_geoms[name])] = self._default_rgba[name]
        for name, color in wanted.items():
            self.model.geom_rgba[sorted(self._obj_geoms[name])] = COLORS[color]
        self._colored = set(wanted)

    def _rest_height(self, name: str) -> float:
        kind = next(o.kind for o in self.task.objects if o.name == name)
        return (MUG_HALF_HEIGHT if kind == "mug" else CUBE_HALF) + 0.001

    def _info(self, clipped: bool, success: bool = False) -> dict[str, Any]:
        return {
            "is_success": bool(success),
            "instruction": self.instruction,
            "task": self.task.name,
            "action_clipped": bool(clipped),
            "goal_streak": self._streak,
        }

    def _state(self) -> np.ndarray:
        pos, rot = self.controller.ee_pose(self.data)
        quat = np.empty(4)
        mujoco.mju_mat2Quat(quat, rot.reshape(9))
        width = self.data.qpos[self._finger_qadr].sum()
        return np.concatenate([pos, quat, [width], self.data.qpos[self.controller.qadr]]).astype(np.float32)

    def camera(self, name: str) -> Camera:
        """The :class:`worldline.Camera` of camera ``name`` at the current simulation state."""
        cid = self._cam_ids[name]
        return Camera.from_mujoco(
            self.data.cam_xpos[cid], self.data.cam_xmat[cid], self.model.cam_fovy[cid], self.rig.width, self.rig.height
        )

    def _observation(self) -> dict:
        obs: dict[str, Any] = {"state": self._state()}
        if self._expert is not None:
            obs["expert_action"] = self._expert.act()
        if self.obs_mode == "state":
            return obs
        frames = self._renderer.render(self.data)
        cams = {}
        for name in self.rig.names:
            rgb, depth = frames[name]
            cam = self.camera(name)
            cams[name] = {
                "rgb": rgb,
                "depth": depth,
                "intrinsics": cam.K.numpy().astype(np.float32),
                "extrinsics": cam.w2c.numpy().astype(np.float32),
            }
        obs["cameras"] = cams
        if self.obs_mode == "pointcloud":
            obs["points"] = self._point_cloud(cams)
        return obs

    def _point_cloud(self, cams: dict) -> np.ndarray:
        names = self.rig.names
        cloud = fuse_rgbd(
            [
                Camera(
                    torch.from_numpy(cams[n]["intrinsics"]),
                    torch.from_numpy(cams[n]["extrinsics"]),
                    self.rig.width,
                    self.rig.height,
                )
                for n in names
            ],
            [torch.from_numpy(cams[n]["depth"]) for n in names],
            [torch.from_numpy(cams[n]["rgb"]) for n in names],
        )
        cloud = crop_to_box(cloud, WORKSPACE_BOX[0], WORKSPACE_BOX[1])
        if len(cloud) == 0:
            return np.zeros((self.num_points, 6), np.float32)
        gen = torch.Generator().manual_seed(int(self.np_random.integers(2**31)))
        cloud = resample_points(cloud, self.num_points, gen)
        return torch.cat([cloud.xyz, cloud.rgb], dim=-1).numpy().astype(np.float32)
