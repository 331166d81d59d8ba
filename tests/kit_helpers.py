"""Shared test helpers for the deployment kit in export/ (installed as ``robo_ppo.deploy_kit``; each module
also runs from a plain copy of the folder)."""

from __future__ import annotations

import copy
import functools
import importlib
from pathlib import Path

import numpy as np

KIT = Path(__file__).resolve().parents[1] / "export"


def load_kit(name: str):
    """The kit's module ``export/<name>.py`` as installed: ``robo_ppo.deploy_kit.<name>``."""
    return importlib.import_module(f"robo_ppo.deploy_kit.{name}")


ROBOT_ENV = "go1_joystick"
"""The robot task the deploy tests build their metadata from (a real RobotVecEnv's)."""
QUIET_ROBOT = ["env.task_params.noise_level=0", "env.task_params.events.randomize.params.enable=false",
               "engine.num_threads=1"]
"""Overrides of a noise-free, unrandomized robot env (no encoder offsets) on one thread."""
NO_HISTORY = "env.task_params.obs_history=1"
"""Override: the policy input is one observation frame (no ``obs_history`` in the metadata)."""
NO_RAMP = ["env.task_params.events.command.params.rate_limit=null",
           "env.task_params.events.command.params.full_reversal_s=null"]
"""Overrides: the robot-side controller passes commands through (no ``command_rate_limit``, given or derived)."""
ONE_FRAME = [NO_HISTORY, *NO_RAMP]
"""Overrides of a robot task whose policy input is one observation frame and whose commands are not ramped
(robot contract 2): the input the term-by-term tests read. The Go1's shipped task stacks two frames and
ramps its commands; tests/test_observation_history.py and tests/test_command_rate_limit.py test those."""


def robot_env(num_envs: int = 1, *overrides: str, seed: int = 0, env: str = ROBOT_ENV):
    """A ``RobotVecEnv`` (engine mujoco) of ``env=<env>`` with :data:`QUIET_ROBOT` and ``overrides``."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from robo_ppo.config import register_configs
    from robo_ppo.envs import make_vec_env
    from robo_ppo.hydra_utils import config_dir

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
        cfg = compose("train", overrides=[f"env={env}", "engine=mujoco", *QUIET_ROBOT, *overrides])
    return make_vec_env(cfg.env, cfg.engine, num_envs, seed=seed)


@functools.cache
def robot_metadata(*overrides: str) -> dict:
    """``RobotVecEnv.metadata()`` of a one-env :func:`robot_env` (``robot`` is the deploy contract)."""
    env = robot_env(1, *overrides)
    try:
        return copy.deepcopy(env.metadata())
    finally:
        env.close()


def deploy_and_training_observations(env, harness, steps: int, every: int = 3):
    """Yield ``(deploy obs, training obs)`` per env every ``every`` of ``steps`` random-action steps of
    ``env`` (a ``RobotVecEnv``, torch seed 0). Each env's state (with the solver's warm start) is copied
    into ``harness.data`` (a ``harness.MujocoHarness``, its own motor scene), ``mj_forward``; the
    controller gets the env's last action, the gait clock's time (``steps * dt`` since its reset) and the
    env's command as its ramped command (a rate limit's ramp then holds it), and observes what the
    harness's driver reads (``harness.measurements()``) with the env's command. Yielded is the newest frame
    of its input (the first ``env.task.obs_size`` values: with a history the older frames are the
    controller's own pushes, tests/test_observation_history.py). The training side is the task's
    noise-free observation frame."""
    import mujoco
    import torch

    data, model, ctrl = harness.data, harness.model, harness.controller
    gen = torch.Generator().manual_seed(0)
    act_dim, frame = env.action_space.shape[0], env.task.obs_size
    for step in range(steps):
        env.step(2 * torch.rand(env.num_envs, act_dim, generator=gen) - 1)
        if step % every:
            continue
        want = env.task.observe(noise=False)[0].numpy()
        for i in range(env.num_envs):
            src = env.physics.datas[i]
            data.qpos[:], data.qvel[:], data.qacc_warmstart[:] = src.qpos, src.qvel, src.qacc_warmstart
            mujoco.mj_forward(model, data)
            ctrl.last_action = env.task.last_act[i].numpy().copy()
            ctrl.time_s = int(env.task.steps[i]) * env.task.dt
            command = env.task.command[i].numpy().astype(np.float64)
            ctrl.command = command.copy()   # the env's command is where a rate limit's ramp stands
            yield ctrl.observe(harness.measurements(), command)[:frame], want[i]


def policy_obs_dim(robot: dict) -> int:
    """The policy input's size a robot metadata ``robot`` asks for: where its obs_layout ends x its
    obs_history's frames (1 without one)."""
    return sum(int(e["size"]) for e in robot["obs_layout"]) * int((robot.get("obs_history") or {}).get("length", 1))


def write_robot_policy(path: Path, robot: dict | None, bias=None, obs_dim: int | None = None,
                       act_dim: int | None = None, engine: str | None = None,
                       task_id: str = "Go1JoystickFlatTerrain") -> Path:
    """A constant ONNX policy, obs ``[batch, obs_dim]`` -> actions ``obs @ 0 + bias``, with
    robo_ppo's metadata encoding (the kit's ``encode_metadata_value``: strings verbatim, the rest JSON)
    and ``robot`` when given.
    ``obs_dim``/``act_dim`` default to the robot's (its obs_layout's end x its obs_history's frames, its
    joints), else 48 and 12."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if obs_dim is None:
        obs_dim = policy_obs_dim(robot) if robot else 48
    if act_dim is None:
        act_dim = len(robot["joint_names"]) if robot else 12

    w = numpy_helper.from_array(np.zeros((obs_dim, act_dim), np.float32), "w")
    b = numpy_helper.from_array(np.zeros(act_dim, np.float32) if bias is None else
                                np.asarray(bias, np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["obs", "w"], ["z"]), helper.make_node("Add", ["z", "b"], ["actions"])],
        "constant_robot_policy", [helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["batch", obs_dim])],
        [helper.make_tensor_value_info("actions", TensorProto.FLOAT, ["batch", act_dim])], [w, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)
    meta = {"format": "robo_ppo.policy/1", "obs_dim": obs_dim, "act_dim": act_dim, "action_type": "continuous",
            "action_low": [-1.0] * act_dim, "action_high": [1.0] * act_dim, "task_id": task_id,
            "control_dt": float(robot["control_dt"]) if robot else 0.02}
    if engine is not None:
        meta["engine"] = engine
    if robot is not None:
        meta["robot"] = robot
    encode = load_kit("onnx_controller").encode_metadata_value  # the kit's one encoding
    for key, value in meta.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, encode(key, value)
    onnx.save(model, str(path))
    return path
