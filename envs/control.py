"""End-effector control of the Panda: damped least-squares inverse kinematics to joint targets.

An action ``[dx, dy, dz, drx, dry, drz, gripper]`` (base frame, metres and axis-angle radians;
gripper -1 open .. +1 closed) moves the commanded end-effector pose; DLS IK iterates on a scratch
copy of the kinematics to find joint targets for the position actuators.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from envs.robot import ARM_JOINTS, EE_SITE, FINGER_JOINTS, GRIPPER_CLOSED, GRIPPER_OPEN


@dataclass(frozen=True)
class ActionLimits:
    """Per-step limits: metres for translation, radians for rotation."""

    max_translation: float = 0.03
    max_rotation: float = 0.2


def _axis_angle_to_mat(v: np.ndarray) -> np.ndarray:
    out = np.empty(9)
    angle = float(np.linalg.norm(v))
    q = (
        np.array([1.0, 0, 0, 0])
        if angle < 1e-12
        else np.concatenate([[np.cos(angle / 2)], np.sin(angle / 2) * v / angle])
    )
    mujoco.mju_quat2Mat(out, q)
    return out.reshape(3, 3)


def rotation_error(target: np.ndarray, current: np.ndarray) -> np.ndarray:
    """Axis-angle vector [3] of the rotation taking ``current`` to ``target`` (world frame)."""
    q_t, q_c = np.empty(4), np.empty(4)
    mujoco.mju_mat2Quat(q_t, target.reshape(9))
    mujoco.mju_mat2Quat(q_c, current.reshape(9))
    q_c_inv = np.empty(4)
    mujoco.mju_negQuat(q_c_inv, q_c)
    q_err = np.empty(4)
    mujoco.mju_mulQuat(q_err, q_t, q_c_inv)
    err = np.empty(3)
    mujoco.mju_quat2Vel(err, q_err, 1.0)
    return err


class DLSController:
    """Damped least-squares IK from end-effector deltas to arm joint targets."""

    def __init__(self, model: mujoco.MjModel, limits: ActionLimits | None = None, damping: float = 0.05):
        self.model = model
        self.limits = ActionLimits() if limits is None else limits
        self.damping = damping
        self.site = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, EE_SITE)
        self.qadr = np.array(
            [model.jnt_qposadr[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, j)] for j in ARM_JOINTS]
        )
        self.dofadr = np.array(
            [model.jnt_dofadr[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, j)] for j in ARM_JOINTS]
        )
        jids = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, j) for j in ARM_JOINTS]
        self.qlow = model.jnt_range[jids, 0]
        self.qhigh = model.jnt_range[jids, 1]
        jnames = [
            mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, model.actuator_trnid[i, 0]) for i in range(model.nu)
        ]
        self.arm_act = np.array([jnames.index(j) for j in ARM_JOINTS])
        self.finger_act = np.array([jnames.index(j) for j in FINGER_JOINTS])
        self._scratch = mujoco.MjData(model)
        self._jacp = np.zeros((3, model.nv))
        self._jacr = np.zeros((3, model.nv))

    def ee_pose(self, data: mujoco.MjData) -> tuple[np.ndarray, np.ndarray]:
        """End-effector position [3] (m) and rotation matrix [3, 3] in the base frame."""
        return data.site_xpos[self.site].copy(), data.site_xmat[self.site].reshape(3, 3).copy()

    def clip(self, action: np.ndarray) -> tuple[np.ndarray, bool]:
        """Scale translation and rotation to their norm limits, clip gripper to [-1, 1]."""
        a = np.asarray(action, dtype=np.float64).copy()
        clipped = False
        t = np.linalg.norm(a[:3])
        if t > self.limits.max_translation:
            a[:3] *= self.limits.max_translation / t
            clipped = True
        r = np.linalg.norm(a[3:6])
        if r > self.limits.max_rotation:
            a[3:6] *= self.limits.max_rotation / r
            clipped = True
        if abs(a[6]) > 1:
            a[6] = np.clip(a[6], -1, 1)
            clipped = True
        return a, clipped

    def solve(self, data: mujoco.MjData, pos: np.ndarray, rot: np.ndarray, iters: int = 8) -> np.ndarray:
        """Arm joint targets [7] that put the end-effector site at (pos, rot)."""
        s = self._scratch
        s.qpos[:] = data.qpos
        q = s.qpos[self.qadr].copy()
        lam2 = self.damping**2
        for _ in range(iters):
            s.qpos[self.qadr] = q
            mujoco.mj_kinematics(self.model, s)
            mujoco.mj_comPos(self.model, s)
            err = np.concatenate([pos - s.site_xpos[self.site], rotation_error(rot, s.site_xmat[self.site])])
            if np.linalg.norm(err[:3]) < 1e-4 and np.linalg.norm(err[3:]) < 1e-3:
                break
            mujoco.mj_jacSite(self.model, s, self._jacp, self._jacr, self.site)
            jac = np.vstack([self._jacp[:, self.dofadr], self._jacr[:, self.dofadr]])
            dq = jac.T @ np.linalg.solve(jac @ jac.T + lam2 * np.eye(6), err)
            q = np.clip(q + dq, self.qlow, self.qhigh)
        return q

    def apply(self, data: mujoco.MjData, target_pos: np.ndarray, target_rot: np.ndarray, gripper: float) -> None:
        """Set actuator controls for a commanded end-effector pose and gripper command."""
        data.ctrl[self.arm_act] = self.solve(data, target_pos, target_rot)
        width = GRIPPER_OPEN + (GRIPPER_CLOSED - GRIPPER_OPEN) * (gripper + 1) / 2
        data.ctrl[self.finger_act] = width

    @staticmethod
    def delta_rotation(rot: np.ndarray, axis_angle: np.ndarray) -> np.ndarray:
        """Apply a base-frame axis-angle delta to a rotation matrix: R' = exp(v) R."""
        return _axis_angle_to_mat(axis_angle) @ rot
