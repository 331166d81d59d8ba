"""Shared test helpers: compose configs from the real conf/ tree."""

from __future__ import annotations

import functools
import os
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import pytest  # noqa: E402
import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.global_hydra import GlobalHydra  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from robo_ppo.config import register_configs  # noqa: E402
from robo_ppo.hydra_utils import config_dir  # noqa: E402

torch.set_num_threads(1)

QUIET = ["progress=false", "tensorboard=false", "export_onnx=false"]

# ---------------------------------------------------------------- robots
ROBOTS = sorted(p.stem for p in (Path(config_dir()) / "robot").glob("*.yaml"))
"""Every robot in conf/robot/ (the tests' only list of robots); its env is :func:`robot_env_name`."""
EXPECTATIONS = Path(__file__).with_name("robot_expectations.yaml")
"""What the tests expect of each robot (data, keyed by robot name, over defaults)."""


def robot_env_name(robot: str) -> str:
    """The joystick env of ``robot``: ``conf/env/<robot>_joystick.yaml``."""
    return f"{robot}_joystick"


@functools.cache
def robot_expectations(robot: str) -> dict:
    """``robot``'s entry of tests/robot_expectations.yaml merged over its ``defaults`` (a key the
    defaults lack is an error: a misspelt expectation must not pass unchecked)."""
    data = OmegaConf.load(EXPECTATIONS)
    merged = OmegaConf.create(data.defaults)
    OmegaConf.set_struct(merged, True)
    merged = OmegaConf.merge(merged, data.robots.get(robot) or {})
    return OmegaConf.to_container(merged)


def make_cfg(*overrides: str):
    """Compose conf/train.yaml with ``overrides`` (plus quiet run settings)."""
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(), version_base=None):
        return compose(config_name="train", overrides=[*QUIET, *overrides])


ENGINE_EXTRAS = {"envpool": ("envpool", "envpool"), "brax": ("brax", "brax"), "mjwarp": ("mujoco_warp", "mjwarp")}
"""Engine -> (module it imports, the pyproject extra that installs it)."""


def require_engine(cfg) -> None:
    """Skip the calling test, naming the extra to install, when ``cfg``'s engine needs one that is not
    installed (``env=ant`` runs on EnvPool by default: ``pip install -e '.[envpool]'``)."""
    import importlib.util

    module, extra = ENGINE_EXTRAS.get(cfg.engine.name, (None, None))
    if module is not None and importlib.util.find_spec(module) is None:
        pytest.skip(f"engine={cfg.engine.name} ({cfg.env.name}) needs the {extra} extra: pip install -e '.[{extra}]'")


@pytest.fixture
def cfg_factory():
    return make_cfg


# ---------------------------------------------------------------- trained runs
FAST = ["total_timesteps=2048", "algo.num_envs=2", "algo.num_steps=256", "algo.num_minibatches=4",
        "algo.update_epochs=4", "eval_interval=0", "eval_episodes=1", "torch_threads=1"]


def make_run(base, env: str, train: bool):
    """Checkpoint of a run in ``base/<env>_<trained|fresh>``: after 4 short PPO
    iterations, or straight after initialisation (fresh policy, normalizer
    seeded by one reset). Reused when it already exists."""
    from pathlib import Path

    from robo_ppo.runner.trainer import Trainer

    run_dir = Path(base) / f"{env}_{'trained' if train else 'fresh'}"
    existing = sorted((run_dir / "checkpoints").glob("ckpt_*.pt"))
    if existing:
        return existing[-1]
    trainer = Trainer(make_cfg(f"env={env}", *FAST), run_dir)
    try:
        return Path(trainer.train()["checkpoint"]) if train else trainer.save()
    finally:
        trainer.close()


@pytest.fixture(scope="session")
def runs(tmp_path_factory):
    """{(env, trained): checkpoint path} for Gaussian (inverted_pendulum) and Categorical (cartpole)."""
    base = tmp_path_factory.getbasetemp() / "robo_ppo_runs"
    return {(env, trained): make_run(base, env, trained)
            for env in ("inverted_pendulum", "cartpole") for trained in (True, False)}


@pytest.fixture(scope="session")
def policies(runs):
    """{env: (checkpoint, policy.onnx)} of the trained runs."""
    from robo_ppo.export import export_checkpoint

    out = {}
    for env in ("inverted_pendulum", "cartpole"):
        ckpt = runs[(env, True)]
        onnx_path = ckpt.parent.parent / "policy.onnx"
        if not onnx_path.is_file():
            export_checkpoint(ckpt, onnx_path)
        out[env] = (ckpt, onnx_path)
    return out
