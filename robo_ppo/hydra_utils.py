"""Where the Hydra config tree lives, and running a Hydra app from a console script."""

from __future__ import annotations

from pathlib import Path


def config_dir() -> str:
    """Absolute path of the ``conf/`` tree.

    A source checkout (``pip install -e .``) uses ``<repo>/conf``; a wheel
    install carries the same files as package data in ``robo_ppo/conf``.
    """
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "conf", here / "conf"):
        if (candidate / "train.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError(f"robo_ppo config tree not found next to {here}")
