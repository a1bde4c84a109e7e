"""Compose a tabletop scene in code: Panda + table + objects + cameras -> MjModel.

World frame = robot base frame, z up; the table top is the plane z = 0 and the robot base sits on
it at the origin. Objects are parts (:class:`ObjectSpec`); movable ones get a free joint, fixtures
(bowls, plates, target regions) are static bodies placed at reset by editing ``model.body_pos``.

Geom groups: 0 = robot visual meshes, 1 = table and objects, 3 = robot collision meshes.
Rendering shows group 3 instead of 0 when ``low_poly`` is set (the collision meshes have a few
hundred triangles instead of tens of thousands, which matters for software rendering).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import mujoco

from envs.cameras import CameraRig
from envs.robot import BODY_PREFIX, HAND_BODY, franka_assets_dir

COLORS = {
    "red": (0.85, 0.15, 0.12, 1.0),
    "green": (0.15, 0.7, 0.2, 1.0),
    "blue": (0.15, 0.3, 0.85, 1.0),
    "yellow": (0.95, 0.8, 0.1, 1.0),
    "purple": (0.55, 0.2, 0.7, 1.0),
    "orange": (0.95, 0.5, 0.1, 1.0),
    "white": (0.92, 0.92, 0.9, 1.0),
    "grey": (0.5, 0.5, 0.5, 1.0),
}

TABLE_TOP_Z = 0.0
TABLE_HALF = (0.65, 0.75, 0.02)  # half extents of the table board, metres
TABLE_CENTER_XY = (0.35, 0.0)
CUBE_HALF = 0.02
BOWL_RADIUS = 0.075
BOWL_WALL = 0.035
PLATE_RADIUS = 0.08
MUG_RADIUS = 0.025
MUG_HALF_HEIGHT = 0.04
REGION_HALF = 0.06

OBJECT_FRICTION = 0.5  # objects and table (sliding)
FINGER_FRICTION = 1.5  # finger pads

KINDS = ("cube", "bowl", "plate", "mug", "region")
MOVABLE = ("cube", "mug")


@dataclass(frozen=True)
class ObjectSpec:
    """A scene object: ``kind`` in KINDS, a colour name from COLORS, a unique ``name``."""

    name: str
    kind: str
    color: str

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind: expected one of {KINDS} for object {self.name!r}, got {self.kind!r}")
        if self.color not in COLORS:
            raise ValueError(f"color: expected one of {sorted(COLORS)} for object {self.name!r}, got {self.color!r}")

    @property
    def movable(self) -> bool:
        return self.kind in MOVABLE

    @property
    def label(self) -> str:
        return f"{self.color} {self.kind}"


def _base_xml() -> str:
    root = franka_assets_dir()
    return f"""<mujoco model="worldline_tabletop">
  <include file="{root}/assets.xml"/>
  <compiler angle="radian" meshdir="{root}/meshes" autolimits="true"/>
  <include file="{root}/actuator.xml"/>
  <worldbody>
    <body name="robot_base" pos="0 0 {TABLE_TOP_Z}">
      <include file="{root}/chain.xml"/>
    </body>
  </worldbody>
</mujoco>"""


def _add_cube(body, spec: ObjectSpec):
    body.add_freejoint(name=f"{spec.name}_joint")
    body.add_geom(
        name=f"{spec.name}_geom", type=mujoco.mjtGeom.mjGEOM_BOX, size=[CUBE_HALF] * 3, rgba=COLORS[spec.color],
        mass=0.05, friction=[OBJECT_FRICTION, 0.01, 0.001], condim=4, group=1,
    )  # fmt: skip


def _add_mug(body, spec: ObjectSpec):
    body.add_freejoint(name=f"{spec.name}_joint")
    body.add_geom(
        name=f"{spec.name}_geom", type=mujoco.mjtGeom.mjGEOM_CYLINDER, size=[MUG_RADIUS, MUG_HALF_HEIGHT, 0],
        rgba=COLORS[spec.color], mass=0.08, friction=[OBJECT_FRICTION, 0.01, 0.001], condim=4, group=1,
    )  # fmt: skip
    body.add_geom(
        name=f"{spec.name}_handle", type=mujoco.mjtGeom.mjGEOM_BOX, size=[0.012, 0.004, 0.025],
        pos=[MUG_RADIUS + 0.01, 0, 0], rgba=COLORS[spec.color], mass=0.005, group=1,
    )  # fmt: skip


def _add_bowl(body, spec: ObjectSpec, segments: int = 12):
    rgba = COLORS[spec.color]
    body.add_geom(
        name=f"{spec.name}_geom", type=mujoco.mjtGeom.mjGEOM_CYLINDER, size=[BOWL_RADIUS, 0.004, 0],
        pos=[0, 0, 0.004], rgba=rgba, group=1,
    )  # fmt: skip
    half_len = BOWL_RADIUS * math.tan(math.pi / segments) + 0.002
    for i in range(segments):
        a = 2 * math.pi * i / segments
        body.add_geom(
            name=f"{spec.name}_wall{i}", type=mujoco.mjtGeom.mjGEOM_BOX, size=[0.004, half_len, BOWL_WALL / 2],
            pos=[BOWL_RADIUS * math.cos(a), BOWL_RADIUS * math.sin(a), BOWL_WALL / 2],
            quat=[math.cos(a / 2), 0, 0, math.sin(a / 2)], rgba=rgba, group=1,
        )  # fmt: skip


def _add_plate(body, spec: ObjectSpec):
    body.add_geom(
        name=f"{spec.name}_geom", type=mujoco.mjtGeom.mjGEOM_CYLINDER, size=[PLATE_RADIUS, 0.005, 0],
        pos=[0, 0, 0.005], rgba=COLORS[spec.color], group=1,
    )  # fmt: skip


def _add_region(body, spec: ObjectSpec):
    body.add_geom(
        name=f"{spec.name}_geom", type=mujoco.mjtGeom.mjGEOM_BOX, size=[REGION_HALF, REGION_HALF, 0.0005],
        pos=[0, 0, 0.0005], rgba=COLORS[spec.color], contype=0, conaffinity=0, group=1,
    )  # fmt: skip


_BUILDERS = {"cube": _add_cube, "mug": _add_mug, "bowl": _add_bowl, "plate": _add_plate, "region": _add_region}


def build_model(
    objects: tuple[ObjectSpec, ...],
    rig: CameraRig,
    *,
    low_poly: bool = True,
    shadows: bool = False,
    offsamples: int = 0,
    timestep: float = 0.002,
) -> mujoco.MjModel:
    """Compose and compile the scene.

    Args:
        objects: the task's objects; names must be unique.
        rig: cameras to add (fixed ones to the world, the wrist one to the hand).
        low_poly: colour the robot's collision meshes so renderers can show them instead of the
            visual meshes (see module doc); the renderer's geom groups make the choice.
        shadows: lights cast shadow maps (slow in software rendering).
        offsamples: multisampling for offscreen rendering (0 = off, fastest in software).
        timestep: physics step in seconds.
    """
    names = [o.name for o in objects]
    if len(set(names)) != len(names):
        raise ValueError(f"objects: duplicate object names in {names}")
    spec = mujoco.MjSpec.from_string(_base_xml())
    spec.option.timestep = timestep
    spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    spec.option.cone = mujoco.mjtCone.mjCONE_ELLIPTIC
    spec.option.impratio = 10
    spec.visual.global_.offwidth = max(rig.width, 640)
    spec.visual.global_.offheight = max(rig.height, 480)
    spec.visual.quality.offsamples = offsamples
    spec.visual.headlight.ambient = [0.35, 0.35, 0.35]
    spec.visual.headlight.diffuse = [0.3, 0.3, 0.3]
    spec.visual.map.znear = 0.005
    spec.stat.extent = 2.0
    spec.stat.center = [0.3, 0.0, 0.2]

    for body in spec.bodies:
        if body.name.startswith(BODY_PREFIX):
            body.gravcomp = 1.0  # the real Panda's controller compensates gravity
    finger_bodies = {b.name for b in spec.bodies if b.name.endswith("finger")}
    for geom in spec.geoms:
        if geom.parent.name in finger_bodies and geom.contype:
            # rubber finger pads: their friction wins in finger-object contacts (priority), so
            # objects can slide on the table (low friction, no tipping when pushed) yet not slip
            # out of a grasp
            geom.priority = 1
            geom.friction = [FINGER_FRICTION, 0.01, 0.0001]
        if geom.group == 3 and low_poly:
            geom.rgba = [0.55, 0.57, 0.6, 1.0]  # opaque, so the collision meshes render as the robot

    world = spec.worldbody
    for pos, d in (((1.5, 1.0, 2.5), (-0.6, -0.4, -1.0)), ((1.5, -1.0, 2.5), (-0.6, 0.4, -1.0))):
        world.add_light(pos=pos, dir=d, diffuse=[0.5, 0.5, 0.5], specular=[0.1, 0.1, 0.1], castshadow=shadows)
    world.add_geom(
        name="floor", type=mujoco.mjtGeom.mjGEOM_PLANE, size=[3, 3, 0.1], pos=[0, 0, -0.75],
        rgba=[0.35, 0.37, 0.4, 1], group=1,
    )  # fmt: skip
    world.add_geom(
        name="table", type=mujoco.mjtGeom.mjGEOM_BOX, size=list(TABLE_HALF),
        pos=[TABLE_CENTER_XY[0], TABLE_CENTER_XY[1], TABLE_TOP_Z - TABLE_HALF[2]], rgba=[0.72, 0.6, 0.45, 1],
        friction=[OBJECT_FRICTION, 0.01, 0.001], group=1,
    )  # fmt: skip
    for obj in objects:
        body = world.add_body(name=obj.name, pos=[0.5, 0.0, 0.2 if obj.movable else 0.0])
        _BUILDERS[obj.kind](body, obj)

    for cam in rig.cameras:
        if cam.wrist:
            hand = spec.body(HAND_BODY)
            # link7 z points out of the flange toward the fingertips; MuJoCo cameras look down -z,
            # so rotate 180 deg about x. Offset sideways so the fingers stay in view.
            hand.add_camera(name=cam.name, pos=[0.06, -0.06, 0.09], quat=[0, 0.9659, -0.2588, 0], fovy=cam.fovy)
        else:
            pos, quat = cam.mujoco_pose()
            world.add_camera(name=cam.name, pos=pos.tolist(), quat=quat.tolist(), fovy=cam.fovy)
    return spec.compile()
