"""Multi-camera offscreen RGB-D rendering in one pass per camera.

``mujoco.Renderer`` draws the scene twice to get RGB and depth (the depth pass uses segmentation
colours). Here each camera is drawn once and both buffers are read from that frame; the
non-linear reversed-z buffer is converted to metric planar depth with MuJoCo's own projection
constants (the same formula as ``Renderer.enable_depth_rendering``), and pixels at the far plane
(background) become 0 = invalid. Images are flipped to be upright exactly once, here.
"""

from __future__ import annotations

import weakref

import mujoco
import numpy as np

from envs._gl import gl_context_class
from envs.cameras import CameraRig


class MultiViewRenderer:
    """Render every camera of a rig. The GL context is created on first use (so an env can be
    built in a parent process and rendered in a worker, as AsyncVectorEnv does)."""

    def __init__(self, model: mujoco.MjModel, rig: CameraRig, *, low_poly: bool = True):
        self.model = model
        self.rig = rig
        self.cam_ids = []
        for name in rig.names:
            cid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, name)
            if cid < 0:
                raise ValueError(f"camera {name!r} is not in the model")
            self.cam_ids.append(cid)
        self.option = mujoco.MjvOption()
        # group 0: robot visual meshes, 1: table/objects, 3: robot collision meshes
        groups = [0, 1, 1, 1, 0, 0] if low_poly else [1, 1, 1, 0, 0, 0]
        self.option.geomgroup[:] = groups
        self._ctx = None
        self._gl = None
        self._scene = None
        self._cam = mujoco.MjvCamera()
        self._cam.type = int(mujoco.mjtCamera.mjCAMERA_FIXED)
        self._rect = mujoco.MjrRect(0, 0, rig.width, rig.height)
        extent = model.stat.extent
        znear = np.float32(model.vis.map.znear * extent)
        zfar = np.float32(model.vis.map.zfar * extent)
        c = -(zfar + znear) / (zfar - znear)
        d = -(np.float32(2) * zfar * znear) / (zfar - znear)
        self._c = np.float64(np.float32(-0.5) * c - np.float32(0.5))
        self._d = np.float64(np.float32(-0.5) * d)
        self.zfar = float(zfar)
        self._rgb = np.empty((rig.height, rig.width, 3), np.uint8)
        self._zbuf = np.empty((rig.height, rig.width), np.float32)

    def _init_gl(self):
        self._gl = gl_context_class()(self.model.vis.global_.offwidth, self.model.vis.global_.offheight)
        self._gl.make_current()
        self._ctx = mujoco.MjrContext(self.model, int(mujoco.mjtFontScale.mjFONTSCALE_150))
        # free at garbage collection or, at the latest, at exit while the GL modules still exist
        # (a GLContext freed during interpreter teardown prints a traceback under OSMesa)
        self._finalizer = weakref.finalize(self, _release, self._ctx, self._gl)
        mujoco.mjr_setBuffer(int(mujoco.mjtFramebuffer.mjFB_OFFSCREEN), self._ctx)
        self._ctx.readDepthMap = int(mujoco.mjtDepthMap.mjDEPTH_ZEROFAR)
        self._scene = mujoco.MjvScene(self.model, maxgeom=2000)

    def render(self, data: mujoco.MjData, depth: bool = True) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
        """Return ``{camera: (rgb uint8 [H, W, 3], depth float32 [H, W] metres or None)}``."""
        if self._ctx is None:
            self._init_gl()
        self._gl.make_current()
        out = {}
        for name, cid in zip(self.rig.names, self.cam_ids):
            self._cam.fixedcamid = cid
            mujoco.mjv_updateScene(
                self.model, data, self.option, None, self._cam, int(mujoco.mjtCatBit.mjCAT_ALL), self._scene
            )
            mujoco.mjr_render(self._rect, self._scene, self._ctx)
            mujoco.mjr_readPixels(self._rgb, self._zbuf if depth else None, self._rect, self._ctx)
            rgb = np.flipud(self._rgb).copy()
            dep = None
            if depth:
                z = np.flipud(self._zbuf).astype(np.float64)
                with np.errstate(divide="ignore"):
                    metric = self._d / (z + self._c)
                dep = np.where(metric < self.zfar * 0.999, metric, 0.0).astype(np.float32)
            out[name] = (rgb, dep)
        return out

    def close(self):
        if self._ctx is not None:
            self._finalizer()
            self._ctx = self._gl = self._scene = None


def _release(ctx: mujoco.MjrContext, gl) -> None:
    ctx.free()
    gl.free()
