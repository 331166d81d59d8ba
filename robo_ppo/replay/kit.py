"""Locating the data robo_ppo carries beside its code: the deployment kit (the checkout's ``export/``
or the wheel's ``robo_ppo/deploy_kit``), importing its modules, and the trained controllers it ships
(``policies/``)."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from robo_ppo.errors import ConfigError


def _data_dir(source: str, packaged: str) -> list[Path]:
    """Where a data folder can be: the checkout's top-level ``source`` (next to pyproject.toml), then
    the copy a wheel install carries as package data (``robo_ppo/<packaged>``)."""
    here = Path(__file__).resolve().parents[1]  # robo_ppo/
    candidates = [here / packaged]
    if (here.parent / "pyproject.toml").is_file():
        candidates.insert(0, here.parent / source)
    return candidates


def deploy_kit_dir() -> Path:
    """Folder of the deployment kit: the checkout's ``export/``, else the wheel's ``robo_ppo/deploy_kit``."""
    candidates = _data_dir("export", "deploy_kit")
    for candidate in candidates:
        if (candidate / "deploy.py").is_file():
            return candidate
    raise ConfigError(f"the deployment kit (deploy.py) is not in {' nor in '.join(map(str, candidates))}; "
                      "reinstall robo_ppo")


def shipped_policies() -> dict[str, Path]:
    """The trained controllers robo_ppo ships, ``{name: policy.onnx}``: ``policies/<name>/policy.onnx`` in
    the checkout, else ``robo_ppo/policies`` in a wheel install. ``robo-ppo-replay policy=<name>`` runs one."""
    for candidate in _data_dir("policies", "policies"):
        found = {p.parent.name: p for p in sorted(candidate.glob("*/policy.onnx"))}
        if found:
            return found
    return {}


def load_deploy_kit(name: str = "deploy") -> ModuleType:
    """The deployment kit's module ``<name>`` (``robo_ppo.deploy_kit.<name>``: the checkout's ``export/``
    in an editable install, the wheel's copy otherwise)."""
    return importlib.import_module(f"robo_ppo.deploy_kit.{name}")
