"""Pick MuJoCo's offscreen GL backend before mujoco is imported.

With ``MUJOCO_GL`` unset we choose ``egl`` (NVIDIA's EGL on a GPU machine, Mesa's software
EGL on a CPU-only one) if an EGL display can be opened, else ``osmesa``. The probe runs in a
subprocess so a broken EGL install cannot crash the caller. A user-set value is never changed.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

_PROBE = (
    "import os; os.environ['MUJOCO_GL']='{b}'; os.environ['PYOPENGL_PLATFORM']='{b}';"
    "from mujoco.{b} import GLContext; c=GLContext(8, 8); c.make_current(); c.free()"
)


def _works(backend: str) -> bool:
    env = dict(os.environ, MUJOCO_GL=backend, PYOPENGL_PLATFORM=backend)
    try:
        r = subprocess.run([sys.executable, "-c", _PROBE.format(b=backend)], env=env, capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


def select_gl_backend() -> str:
    """Set and return ``MUJOCO_GL``: the user's choice, else ``egl`` if it works, else ``osmesa``."""
    _load_llvm_users_first()  # before mujoco: with MUJOCO_GL=osmesa, importing mujoco loads Mesa
    if os.environ.get("MUJOCO_GL"):
        return os.environ["MUJOCO_GL"]
    for backend in ("egl", "osmesa"):
        if _works(backend):
            os.environ["MUJOCO_GL"] = backend
            os.environ.setdefault("PYOPENGL_PLATFORM", backend)
            return backend
    os.environ["MUJOCO_GL"] = "egl"  # let the real error surface at render time
    return "egl"


def _load_llvm_users_first() -> None:
    """Import triton, if installed, before any GL context exists.

    triton (installed with CUDA builds of torch, and imported by torch._dynamo, which timm and
    torchvision import) bundles its own LLVM. Loaded into a process where Mesa's llvmpipe (software
    EGL or OSMesa) has already loaded the system LLVM, it segfaults. Loaded first, both coexist.
    Mesa is loaded when a GL context is made (EGL) or already when mujoco is imported with
    ``MUJOCO_GL=osmesa``, so this runs at ``import envs`` and again before each context (cheap:
    about 0.1 s once).
    """
    if importlib.util.find_spec("triton") is not None:
        import triton  # noqa: F401


def gl_context_class():
    """The GLContext class for the selected backend.

    Imported explicitly by name rather than through ``mujoco.gl_context``, which binds the
    backend when mujoco is first imported: a script that imports mujoco before ``envs`` would
    otherwise get GLFW (and fail without a display).
    """
    _load_llvm_users_first()
    backend = os.environ.get("MUJOCO_GL", "").lower()
    if backend == "egl":
        from mujoco.egl import GLContext
    elif backend == "osmesa":
        from mujoco.osmesa import GLContext
    else:
        from mujoco.gl_context import GLContext
    return GLContext
