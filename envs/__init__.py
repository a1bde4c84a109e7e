"""MuJoCo multi-view tabletop environments (Franka Panda) and MV-Bench.

Importing this package picks an offscreen GL backend (see :mod:`envs._gl`) and registers one
gymnasium id per task: ``MVBench/<Task>-v0``.
"""

from envs._gl import select_gl_backend

select_gl_backend()

import gymnasium  # noqa: E402

from envs.tasks import TASKS  # noqa: E402

for _name, _task in TASKS.items():
    _id = f"MVBench/{_name}-v0"
    if _id not in gymnasium.registry:
        gymnasium.register(
            id=_id,
            entry_point="envs.env:TabletopEnv",
            max_episode_steps=_task.max_steps,
            kwargs={"task": _name},
        )

ENV_IDS = tuple(f"MVBench/{n}-v0" for n in TASKS)
