"""The embodied memory task in MuJoCo: a camera agent visits places over a tabletop and is asked
what it saw at one of them.

The scene is an ``envs`` tabletop (the Panda, the table) with a cube on each cell of a 3 x 3 grid
of places on the table. Each episode paints the cubes with random colours (``envs.scene.COLORS``)
and the agent walks at random between neighbouring places (one step per observation), hovering
over the place it is at with a jittered pose and looking down; it records an RGB-D frame at every
step. The place of an observation is computed from the agent's own 3D position: the centre of the
camera (:attr:`worldline.Camera.center`, from MuJoCo's camera pose) is binned into cells of the
place grid with :func:`worldline.voxel_indices`. The query names a visited place; the answer is
the colour of the cube there.

Frames are rendered once per episode set (:func:`render_episodes`) and kept in memory as uint8 RGB
and uint16 millimetre depth, as in the demonstration files.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np
import torch
from tqdm import tqdm

from envs.cameras import CameraRig, CameraSpec
from envs.rendering import MultiViewRenderer
from envs.scene import COLORS, CUBE_HALF, ObjectSpec, build_model
from vla.memory.places import cell_ids
from worldline import Camera

GRID = 3  # places per side
CELL = 0.14  # metres between place centres (and the size of a place cell)
ORIGIN = (0.50 - 1.5 * CELL, -1.5 * CELL, 0.0)  # corner of place cell (0, 0)
HOVER = 0.28  # agent height above the table, metres
COLOUR_NAMES = tuple(COLORS)
AGENT = "agent"


def place_centre(place: int) -> np.ndarray:
    """Table point ``[3]`` (metres, base frame) at the centre of a place cell."""
    ix, iy = place % GRID, place // GRID
    return np.array([ORIGIN[0] + (ix + 0.5) * CELL, ORIGIN[1] + (iy + 0.5) * CELL, 0.0])


def place_of(position: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Place id ``[...]`` of 3D positions ``[..., 3]`` (the xy cell of the grid; -1 off the grid).

    The cell is :func:`worldline.voxel_indices` with the place cell size (through
    :func:`vla.memory.places.cell_ids`); height does not matter."""
    return cell_ids(torch.as_tensor(np.asarray(position), dtype=torch.float64), ORIGIN, CELL, (GRID, GRID))


@dataclass
class EmbodiedEpisodes:
    """Rendered episodes.

    rgb:       uint8 [E, L, S, S, 3]
    depth:     uint16 [E, L, S, S] millimetres (0 = no depth)
    positions: float32 [E, L, 3] agent (camera centre) positions, base frame, metres
    places:    int64 [E, L] place ids computed from the positions
    colours:   int64 [E, GRID * GRID] colour id (index into COLOUR_NAMES) of the cube at each place
    """

    rgb: np.ndarray
    depth: np.ndarray
    positions: np.ndarray
    places: np.ndarray
    colours: np.ndarray


def _walk(rng: np.random.Generator, steps: int) -> np.ndarray:
    pos = rng.integers(0, GRID, 2)
    out = np.empty(steps, np.int64)
    moves = np.array([(0, 1), (0, -1), (1, 0), (-1, 0)])
    for t in range(steps):
        out[t] = pos[1] * GRID + pos[0]
        while True:  # always move to a neighbouring place
            nxt = pos + moves[rng.integers(4)]
            if (nxt >= 0).all() and (nxt < GRID).all():
                pos = nxt
                break
    return out


def render_episodes(
    episodes: int, steps: int = 12, size: int = 32, seed: int = 0, progress: bool = True
) -> EmbodiedEpisodes:
    """Render ``episodes`` walks of ``steps`` observations at ``size`` x ``size`` pixels."""
    rng = np.random.default_rng(seed)
    objects = tuple(ObjectSpec(f"cube{i}", "cube", "grey") for i in range(GRID * GRID))
    rig = CameraRig((CameraSpec(AGENT, azimuth=0.0, elevation=60.0, radius=0.5, fovy=45.0),), size, size)
    model = build_model(objects, rig)
    data = mujoco.MjData(model)
    cam_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, AGENT)
    geoms = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, f"cube{i}_geom") for i in range(GRID * GRID)]
    qadr = [model.jnt_qposadr[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, f"cube{i}_joint")]
            for i in range(GRID * GRID)]  # fmt: skip
    palette = np.array([COLORS[c] for c in COLOUR_NAMES], np.float32)
    renderer = MultiViewRenderer(model, rig)
    n = GRID * GRID
    rgb = np.zeros((episodes, steps, size, size, 3), np.uint8)
    depth = np.zeros((episodes, steps, size, size), np.uint16)
    positions = np.zeros((episodes, steps, 3), np.float32)
    colours = np.zeros((episodes, n), np.int64)
    walks = np.zeros((episodes, steps), np.int64)
    try:
        for e in tqdm(range(episodes), desc="rendering embodied episodes", disable=not progress, leave=False):
            colours[e] = rng.integers(0, len(COLOUR_NAMES), n)
            for i in range(n):
                model.geom_rgba[geoms[i]] = palette[colours[e, i]]
                centre = place_centre(i) + np.append(rng.uniform(-0.03, 0.03, 2), CUBE_HALF)
                yaw = rng.uniform(-np.pi, np.pi)
                data.qpos[qadr[i] : qadr[i] + 7] = [*centre, np.cos(yaw / 2), 0, 0, np.sin(yaw / 2)]
            walks[e] = _walk(rng, steps)
            for t, place in enumerate(walks[e]):
                eye = place_centre(place) + np.array([*rng.uniform(-0.03, 0.03, 2), HOVER])
                yaw = rng.uniform(-np.pi, np.pi)
                # looking straight down: MuJoCo camera frame (-z forward, y up) = rotation about z by yaw,
                # then 180 degrees about the camera's x axis is not needed: -z already points down
                model.cam_pos[cam_id] = eye
                model.cam_quat[cam_id] = [np.cos(yaw / 2), 0, 0, np.sin(yaw / 2)]
                mujoco.mj_kinematics(model, data)
                mujoco.mj_camlight(model, data)
                cam = Camera.from_mujoco(data.cam_xpos[cam_id], data.cam_xmat[cam_id], model.cam_fovy[cam_id],
                                         size, size)  # fmt: skip
                positions[e, t] = cam.center.numpy()
                frame, dep = renderer.render(data)[AGENT]
                rgb[e, t] = frame
                depth[e, t] = np.clip(np.round(dep * 1000.0), 0, 65535).astype(np.uint16)
    finally:
        renderer.close()
    places = place_of(positions).numpy()
    if (places != walks).any():
        raise RuntimeError("embodied: an agent position fell outside its place cell (check CELL / jitter)")
    return EmbodiedEpisodes(rgb, depth, positions, places, colours)


def embodied_sampler(episodes: EmbodiedEpisodes, use_positions: bool = False):
    """A :class:`vla.memory.experiments.PlaceBatch` sampler over rendered episodes: each draw picks
    episodes and a visited place to ask about. Frames are RGB-D: 3 colour channels in [0, 1] and
    depth in metres as a fourth."""
    from vla.memory.experiments import PlaceBatch

    def sample(rng: np.random.Generator, batch: int) -> PlaceBatch:
        idx = rng.integers(0, len(episodes.rgb), batch)
        rgb = episodes.rgb[idx].astype(np.float32) / 255.0
        dep = episodes.depth[idx].astype(np.float32)[..., None] / 1000.0
        frames = np.concatenate([rgb, dep], -1).transpose(0, 1, 4, 2, 3)  # [B, L, 4, S, S]
        places = episodes.places[idx]
        query = np.array([rng.choice(np.unique(p)) for p in places], np.int64)
        answer = episodes.colours[idx, query]
        seen = np.take_along_axis(episodes.colours[idx], places, 1)
        return PlaceBatch(frames, places, query, answer, seen, episodes.positions[idx] if use_positions else None)

    return sample
