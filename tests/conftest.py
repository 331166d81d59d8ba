"""Shared test helpers: compose configs from the real conf/ tree."""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import pytest  # noqa: E402
import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.global_hydra import GlobalHydra  # noqa: E402

from robo_ppo.config import register_configs  # noqa: E402
from robo_ppo.hydra_utils import config_dir  # noqa: E402

torch.set_num_threads(1)

QUIET = ["progress=false", "tensorboard=false", "export_onnx=false"]


def make_cfg(*overrides: str):
    """Compose conf/train.yaml with ``overrides`` (plus quiet run settings)."""
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(), version_base=None):
        return compose(config_name="train", overrides=[*QUIET, *overrides])


@pytest.fixture
def cfg_factory():
    return make_cfg
