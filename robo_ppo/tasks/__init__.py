"""robo_ppo's own robot tasks (pure JAX/MJX, stepped by the batched engine).

``TASKS`` maps the name used in ``env.task`` to ``module:Class``. A new robot:
copy ``go1_joystick.py`` and its ``conf/env`` file and test, and add a line here.
"""

from __future__ import annotations

import importlib
from typing import Any

from robo_ppo.errors import ConfigError

TASKS = {
    "go1_joystick": "robo_ppo.tasks.go1_joystick:Go1Joystick",
}


def make_task(name: str, params: Any = None):
    """Build task ``name`` with ``params`` (the ``env.task_params`` mapping).

    Raises:
        ConfigError: unknown task, bad parameters, or a missing dependency.
    """
    if name not in TASKS:
        raise ConfigError(f"env.task={name!r} is not a robo_ppo task; known: {sorted(TASKS)}")
    module, cls = TASKS[name].split(":")
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        raise ConfigError(f"task {name!r} needs JAX and MuJoCo MJX ({e}): pip install -e '.[brax]'") from e
    return getattr(mod, cls)(params)
