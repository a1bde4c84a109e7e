"""Franka Emika Panda: where its MJCF lives, its joint names, home pose and gripper limits.

The model is the Panda that gymnasium-robotics ships (kitchen_franka/franka_assets), referenced
from the installed package, never copied. Its joints are driven by position actuators.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

ARM_JOINTS = tuple(f"robot:panda0_joint{i}" for i in range(1, 8))
FINGER_JOINTS = ("robot:panda0_finger_joint1", "robot:panda0_finger_joint2")
EE_SITE = "end_effector"
HAND_BODY = "panda0_link7"
BODY_PREFIX = "panda0_"
# Arm home pose (solved by IK): end-effector at (0.5, 0, 0.25) m pointing straight down, fingers
# sliding along the base y axis.
HOME_QPOS = np.array([0.0, -0.0411, 0.0, -2.3347, 0.0, 0.7236, 0.0])
#: End-effector orientation at home: x forward, z down.
EE_DOWN = np.diag([1.0, -1.0, -1.0])
GRIPPER_OPEN = 0.04  # metres per finger (slide joint), fully open
GRIPPER_CLOSED = 0.0


def franka_assets_dir() -> Path:
    """Folder holding assets.xml, chain.xml, actuator.xml and meshes/ of the installed package."""
    spec = importlib.util.find_spec("gymnasium_robotics")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("gymnasium-robotics is required for the Franka Panda model: pip install gymnasium-robotics")
    root = Path(next(iter(spec.submodule_search_locations))) / "envs/assets/kitchen_franka/franka_assets"
    for name in ("assets.xml", "chain.xml", "actuator.xml"):
        if not (root / name).is_file():
            raise FileNotFoundError(f"{root / name}: Panda MJCF missing from the gymnasium-robotics install")
    return root
