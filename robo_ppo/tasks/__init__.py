"""robo_ppo's robot tasks: torch code written once for every robot (``env.task``).

``TASKS`` maps the name used in ``env.task`` to ``module:Class``. A task is
built from a ``RobotModel`` (the robot description bound to its MuJoCo model),
a ``Physics`` engine (``robo_ppo/robots/physics.py``) and its parameters, and
provides ``reset(mask)``, ``step(actions) -> (reward, terminated, terms)``,
``observe() -> (obs, critic_obs)``, ``metadata()`` and the sizes
(``obs_size``, ``critic_obs_size``, ``action_size``, ``dt``, ``reward_terms``) and the action
range ``action_clip`` ``(lo, hi)``.
The engine adapter (``robo_ppo/envs/robot_env.py``) adds time limits,
auto-reset and episode statistics. A new robot of a known kind needs no
Python: a ``conf/robot/`` file and a ``conf/env/`` file.
"""

from __future__ import annotations

import importlib
from typing import Any

from robo_ppo.errors import ConfigError

TASKS = {
    "joystick": "robo_ppo.tasks.joystick:Joystick",
}


def make_task(name: str, robot: Any, physics: Any, params: Any = None, seed: int = 0):
    """Build task ``name`` for ``robot`` on ``physics`` with ``params`` (``env.task_params``).

    Raises:
        ConfigError: unknown task or bad parameters.
    """
    if name not in TASKS:
        raise ConfigError(f"env.task={name!r} is not a robo_ppo task; known: {sorted(TASKS)}")
    module, cls = TASKS[name].split(":")
    return getattr(importlib.import_module(module), cls)(robot, physics, params, seed=seed)


def task_params_schema(name: str):
    """The ``parse_params`` function of task ``name`` (validates ``env.task_params``)."""
    if name not in TASKS:
        raise ConfigError(f"env.task={name!r} is not a robo_ppo task; known: {sorted(TASKS)}")
    return importlib.import_module(TASKS[name].split(":")[0]).parse_params
