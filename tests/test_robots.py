"""Robots added as data (conf/robot/<name>.yaml + conf/env/<name>_joystick.yaml) on the joystick task:
every robot in conf/robot/ (tests/conftest.py ROBOTS), e.g. the Unitree Go1, Boston Dynamics Spot and
the Berkeley Humanoid (a biped with a gait clock).

Every number the tests check is read from the robot's composed config (its env file over
conf/env/_joystick_base.yaml, its robot file) or, for what a robot is expected to do (observation
sizes, standing or falling, its own bad declarations), from tests/robot_expectations.yaml: a new
robot file is tested without editing Python. A robot whose model package is not installed is
skipped (``pip install -e '.[robots]'``).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

mujoco = pytest.importorskip("mujoco")

from conftest import EXPECTATIONS, make_cfg, robot_env_name, robot_expectations  # noqa: E402
from conftest import ROBOTS as ROBOT_NAMES  # noqa: E402
from kit_helpers import (  # noqa: E402
    ONE_FRAME,
    deploy_and_training_observations,
    load_kit,
    policy_obs_dim,
    robot_env,
    write_robot_policy,
)

from robo_ppo.envs import make_vec_env  # noqa: E402
from robo_ppo.hydra_utils import config_dir  # noqa: E402
from robo_ppo.robots.description import parse_robot  # noqa: E402
from robo_ppo.robots.model import RobotModel  # noqa: E402
from robo_ppo.tasks.terms import REWARD_FUNCTIONS, StepState, swing_height  # noqa: E402

CONF = Path(config_dir())
NOMINAL = ["env.task_params.noise_level=0", "env.task_params.events.randomize.params.enable=false",
           "env.task_params.events.reset_base.params.base_velocity=0", "env.task_params.events.reset_base.params.xy=0", "engine.num_threads=1"]


def robot_yaml(name: str):
    return OmegaConf.load(CONF / "robot" / f"{name}.yaml")


@functools.cache
def env_cfg(name: str):
    """The robot's composed ``env`` config (its env file over the joystick base, its robot file)."""
    return make_cfg(f"env={robot_env_name(name)}").env


def plain(x):
    return OmegaConf.to_object(x) if OmegaConf.is_config(x) else x


def _param(name: str):
    package = robot_yaml(name).model.package
    missing = importlib.util.find_spec(package) is None
    return pytest.param(name, marks=pytest.mark.skipif(missing, reason=f"{package} not installed (robots extra)"))


ROBOTS = [_param(n) for n in ROBOT_NAMES]


def make_env(name: str, n: int, *overrides: str, seed: int = 0):
    cfg = make_cfg(f"env={robot_env_name(name)}", "engine.num_threads=1", *overrides)
    return make_vec_env(cfg.env, cfg.engine, n, seed=seed)


_NOMINAL_ENVS: dict = {}


@pytest.fixture(scope="module")
def nominal():
    """``nominal(name)``: a cached 1-env noise-free, unrandomized env of the robot."""
    def get(name):
        if name not in _NOMINAL_ENVS:
            _NOMINAL_ENVS[name] = make_env(name, 1, *NOMINAL)
        return _NOMINAL_ENVS[name]

    yield get
    for env in _NOMINAL_ENVS.values():
        env.close()
    _NOMINAL_ENVS.clear()


# -------------------------------------------------------------- discovery
def test_every_robot_has_a_joystick_env_and_expectations_name_only_robots():
    assert ROBOT_NAMES, "no robot file in conf/robot/"
    for name in ROBOT_NAMES:
        assert (CONF / "env" / f"{robot_env_name(name)}.yaml").is_file(), name
        assert env_cfg(name).robot.name == name
    listed = set(OmegaConf.load(EXPECTATIONS).robots)
    assert listed <= set(ROBOT_NAMES), f"{EXPECTATIONS.name} names robots without a conf/robot/ file"


def test_a_misspelt_expectation_fails(tmp_path, monkeypatch):
    import conftest

    bad = tmp_path / "expectations.yaml"
    bad.write_text("defaults: {joints: 12}\nrobots: {x: {joint: 12}}\n")
    monkeypatch.setattr(conftest, "EXPECTATIONS", bad)
    conftest.robot_expectations.cache_clear()
    try:
        with pytest.raises(Exception, match="joint"):
            conftest.robot_expectations("x")
    finally:
        monkeypatch.undo()
        conftest.robot_expectations.cache_clear()


# ------------------------------------------------------------------- model
@pytest.mark.parametrize("name", ROBOTS)
def test_model_loads_offline_with_every_named_part(name):
    desc = parse_robot(robot_yaml(name))
    rb = RobotModel(desc, env_cfg(name).task_params.sim_dt)
    m = rb.model
    expect = robot_expectations(name)
    assert m.nmesh == 0 and m.ntex == 0 and m.nu == rb.njoints == len(desc.joint_names) == expect["joints"]
    assert m.opt.timestep == env_cfg(name).task_params.sim_dt
    for role in desc.sensors:
        assert rb.sensor(role).stop > rb.sensor(role).start
    F = len(desc.feet)
    assert rb.foot_sensor("contact").shape == (F, 1)
    assert rb.foot_sensor("linvel").shape == rb.foot_sensor("pos").shape == (F, 3)
    # torque limits (null in the robot file): the scene's joint actuatorfrcrange or actuator forcerange
    jid = [m.joint(j).id for j in desc.joint_names]
    source = {"joint_actfrcrange": m.jnt_actfrcrange[jid, 1],
              "actuator_forcerange": m.actuator_forcerange[rb.act_ids, 1]}
    np.testing.assert_array_equal(rb.torque_limits, source[expect["torque_limits_from"]])
    # foot positions: world heights (Spot's come from robot.extra_sensors), feet on the floor at home; or,
    # where tests/robot_expectations.yaml says so, the scene's positions in the IMU site's frame
    d = mujoco.MjData(m)
    mujoco.mj_resetDataKeyframe(m, d, m.key(desc.init_keyframe).id)
    mujoco.mj_forward(m, d)
    pos = d.sensordata[rb.foot_sensor("pos")]
    if expect["foot_pos_frame"] == "world":
        np.testing.assert_allclose(pos, d.site_xpos[rb.feet_sites], atol=1e-9)
        assert (pos[:, 2] < 0.05).all()
    else:
        assert expect["foot_pos_frame"] == "imu", expect["foot_pos_frame"]
        imu = m.site(desc.imu_site).id
        in_imu_frame = (d.site_xpos[rb.feet_sites] - d.site_xpos[imu]) @ d.site_xmat[imu].reshape(3, 3)
        np.testing.assert_allclose(pos, in_imu_frame, atol=1e-9)
    assert [s["name"] for s in rb.extra_sensors] == [
        e.name.format(foot=f) for e in desc.extra_sensors for f in (desc.feet if "{foot}" in e.name else [None])]


@pytest.mark.parametrize("name", ROBOTS)
def test_layouts_and_metadata_come_from_the_declarations(name, nominal):
    env, robot, params = nominal(name), robot_yaml(name), env_cfg(name).task_params
    obs = env.reset(seed=0)
    meta = env.metadata()["robot"]
    layout = meta["obs_layout"]
    assert [e["name"] for e in layout] == [t.name for t in params.obs]
    sizes = [e["size"] for e in layout]
    assert [e["start"] for e in layout] == list(np.cumsum([0] + sizes)[:-1])
    frames = env.task.history_length   # the policy input: the last `obs_history` frames (1: the current one)
    assert meta.get("obs_history", {"length": 1})["length"] == frames
    assert obs.shape == (1, sum(sizes) * frames) and env.critic_obs_dim == sum(s for _, s in env.task.critic_obs_layout)
    expect = robot_expectations(name)
    assert expect["obs_dim"] in (None, obs.shape[1]) and expect["critic_obs_dim"] in (None, env.critic_obs_dim)
    actor, critic = env.task.observe(noise=False)
    torch.testing.assert_close(critic[:, :sum(sizes)], actor)
    J, F = len(robot.joint_names), len(robot.feet)
    assert meta["joint_names"] == list(robot.joint_names)
    assert meta["kp"] == pytest.approx(np.broadcast_to(plain(robot.kp), J).tolist())
    assert meta["kd"] == pytest.approx(np.broadcast_to(plain(robot.kd), J).tolist())
    np.testing.assert_allclose(meta["default_pose"], env.robot.init_qpos[env.robot.qpos_adr])   # home keyframe
    assert meta["command_ranges"] == dict(zip(["vx", "vy", "yaw_rate"], plain(params.events.command.params.ranges),
                                              strict=True))
    assert list(env.reward_terms) == [k for k, v in params.reward_scales.items() if v]
    assert meta["fall"] == plain(robot.fall)
    assert len(meta.get("extra_sensors", [])) == sum(F if "{foot}" in e.name else 1
                                                     for e in robot.get("extra_sensors", []))
    if params.get("gait", {}).get("enable"):
        assert meta["gait"]["frequency_hz"] == pytest.approx(sum(params.gait.frequency) / 2)
        assert meta["gait"]["phase_offsets"] == list(params.gait.phase_offsets)
        assert dict(env.task.obs_layout)["gait_phase"] == 2 * F
    else:
        assert "gait" not in meta


@pytest.mark.parametrize("name", ROBOTS)
def test_randomization_in_the_configured_ranges(name):
    # a robot whose env file ramps these draws in (a randomize_curriculum event: the G1's) is checked at the full ranges
    events = env_cfg(name).task_params.events
    env = make_env(name, 8, *[f"env.task_params.events.{k}.params.start=1.0" for k, e in events.items()
                              if e.fn == "randomize_curriculum"])
    r, rb = env_cfg(name).task_params.events.randomize.params, env.robot
    env.reset(seed=1)
    nom, models, dof, act, base = rb.model, env.physics.models, rb.dof_adr, rb.act_ids, rb.base_body
    tol = 1e-4

    def within(x, lo, hi):
        return bool(((np.asarray(x) >= lo - tol) & (np.asarray(x) <= hi + tol)).all())

    assert within([m.geom_friction[rb.floor_geom, 0] for m in models], *r.floor_friction)
    assert within([m.actuator_gainprm[act, 0] / rb.kp for m in models], *r.kp_scale)
    assert within([-m.actuator_biasprm[act, 2] / rb.kd for m in models], *r.kd_scale)
    assert within([m.dof_frictionloss[dof] / nom.dof_frictionloss[dof] for m in models], *r.frictionloss_scale)
    assert within([m.dof_armature[dof] / nom.dof_armature[dof] for m in models], *r.armature_scale)
    others = [b for b in range(1, nom.nbody) if b != base]
    assert within([m.body_mass[others] / nom.body_mass[others] for m in models], *r.link_mass_scale)
    assert within([m.body_ipos[base] - nom.body_ipos[base] for m in models], -r.com_offset, r.com_offset)
    base_mass = np.array([m.body_mass[base] for m in models])
    assert within(base_mass, nom.body_mass[base] * r.link_mass_scale[0] - r.payload,
                  nom.body_mass[base] * r.link_mass_scale[1] + r.payload)
    assert within(env.task.joint_offset.numpy(), -r.joint_offset, r.joint_offset)
    assert len(np.unique([m.geom_friction[rb.floor_geom, 0] for m in models])) == 8     # fresh per env
    gait = env_cfg(name).task_params.get("gait")
    if gait is not None and gait.enable:
        assert within(env.task.gait_freq.numpy(), *gait.frequency)
        assert within(env.task.gait_start.numpy(), 0.0, 1.0) and len(np.unique(env.task.gait_start.numpy())) == 8
    env.close()


BAD_DECLARATIONS = [pytest.param(name, override, named, id=f"{name}:{override}") for name in ROBOT_NAMES
                    for override, named in robot_expectations(name)["bad_declarations"]]


@pytest.mark.parametrize("name, override, named", BAD_DECLARATIONS)
def test_bad_declarations_fail_at_start_up_naming_them(name, override, named):
    from robo_ppo.errors import ConfigError

    if importlib.util.find_spec(robot_yaml(name).model.package) is None:
        pytest.skip(f"{robot_yaml(name).model.package} not installed")
    with pytest.raises(ConfigError, match=named) as err:
        make_env(name, 1, override)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name", ROBOTS)
def test_per_joint_noise(name):
    """A list of noise half-widths applies one per element (e.g. the humanoid's joint_pos_rel: 0.03 to
    0.08 rad). Checked on each actor term that declares one."""
    terms = [t for t in env_cfg(name).task_params.obs if OmegaConf.is_list(t.get("noise"))]
    if not terms:
        pytest.skip(f"{name} declares no per-element noise")
    env = make_env(name, 256, "env.task_params.events.randomize.params.enable=false")
    env.reset(seed=0)
    layout = env.task.obs_layout
    names = [n for n, _ in layout]
    noisy, clean = env.task.observe(noise=True)[0], env.task.observe(noise=False)[0]
    for term in terms:
        start = sum(size for _, size in layout[:names.index(term.name)])
        want = np.array(plain(term.noise))
        err = (noisy - clean)[:, start:start + len(want)].abs().amax(0).numpy()
        assert (err <= want + 1e-6).all() and (err > 0.9 * want).all(), term.name
    env.close()


# ------------------------------------------------------------------ standing
@pytest.mark.parametrize("name", ROBOTS)
def test_zero_action(name, nominal):
    """2 s at zero action (tests/robot_expectations.yaml, ``zero_action``): the quadrupeds stand. The
    Berkeley Humanoid does not: its home pose under the file's PD gains tips backwards (in Playground's
    scene as loaded, too), and the fall condition must end the episode (tilt, or the base below
    robot.fall.min_base_height: the feet-only scene lets the torso sink through the floor)."""
    expect = robot_expectations(name)["zero_action"]
    env = nominal(name)
    env.reset(seed=3)
    home = float(env.robot.init_qpos[env.robot.root_qpos + 2])
    heights, ended = [], None
    for k in range(100):   # 2 s at 50 Hz
        terminated = env.step(torch.zeros(1, env.robot.njoints))[2]
        heights.append(float(env.physics.qpos[0, env.robot.root_qpos + 2]) if not terminated else math.nan)
        if terminated.any():
            ended = k
            break
    if not expect["stands"]:
        first, last = expect["fall_steps"]
        assert ended is not None and first <= ended < last, ended
        return
    assert ended is None and min(heights) > expect["min_height_ratio"] * home
    np.testing.assert_allclose(env.task.joint_pos[0].numpy(), env.robot.default_pose, atol=expect["pose_atol"])
    assert float(env.physics.qvel.abs().max()) < 0.05    # at rest


# ------------------------------------------------------------------- rewards
def _state(env, qpos=None, command=(0.0, 0.0, 0.0), actions=None, air=None, first=False):
    """StepState of a constructed state of the 1-env task (its reward terms' view)."""
    task, rb = env.task, env.robot
    q = torch.as_tensor(rb.init_qpos if qpos is None else qpos, dtype=torch.float32)[None]
    env.physics.set_state(torch.ones(1, dtype=torch.bool), q, torch.zeros(1, rb.model.nv), task.ctrl)
    task._refresh()
    F = len(rb.feet_sites)
    task.command = torch.tensor([command], dtype=torch.float32)
    task.last_act = torch.zeros(1, env.robot.njoints)
    task.air_time = torch.zeros(1, F) if air is None else torch.tensor([air], dtype=torch.float32)
    task.last_contact = torch.full((1, F), bool(first))
    return StepState(task, torch.zeros(1, env.robot.njoints) if actions is None else torch.as_tensor(actions)[None].float())


def _terms(env, **kw):
    s = _state(env, **kw)
    return {k: float(REWARD_FUNCTIONS[k](env.task, s)[0]) for k in env.reward_terms}


@pytest.mark.parametrize("name", ROBOTS)
def test_reward_term_signs_on_constructed_states(name, nominal):
    env = nominal(name)
    env.reset(seed=0)
    home, rb, p = env.robot.init_qpos.copy(), env.robot, env.task.p
    still = _terms(env)
    assert still["tracking_lin_vel"] == pytest.approx(1.0) and still["tracking_ang_vel"] == pytest.approx(1.0)
    assert still["orientation"] == pytest.approx(0.0, abs=1e-9) and still["termination"] == 0
    assert _terms(env, command=(1.0, 0, 0))["tracking_lin_vel"] < math.exp(-1 / p.tracking_sigma) + 1e-3
    tilted = home.copy()
    tilted[rb.root_qpos + 3:rb.root_qpos + 7] = [math.cos(0.2), math.sin(0.2), 0, 0]     # 0.4 rad roll
    assert _terms(env, qpos=tilted)["orientation"] > 0.1
    flipped = home.copy()
    flipped[rb.root_qpos + 3:rb.root_qpos + 7] = [0.0, 1.0, 0.0, 0.0]
    assert _terms(env, qpos=flipped)["termination"] == 1.0
    assert _terms(env, actions=np.ones(env.robot.njoints))["action_rate"] == pytest.approx(float(env.robot.njoints))
    bent = home.copy()
    j = int(np.argmax(rb.joint_range[:, 1] - rb.joint_range[:, 0]))          # the joint with the widest range
    bent[rb.qpos_adr[j]] = rb.joint_range[j, 1]                              # at its upper limit
    b = _terms(env, qpos=bent)
    if "posture" in b:   # Spot: hold the pose at a zero command, free while moving
        assert still["posture"] == pytest.approx(1.0) and b["posture"] < 1.0
        assert _terms(env, qpos=bent, command=(0.5, 0, 0))["posture"] == 1.0
    if "pose" in b:
        assert still["pose"] == pytest.approx(1.0) and b["pose"] < 1.0
    if "dof_pos_limits" in b:
        assert still["dof_pos_limits"] == 0 and b["dof_pos_limits"] > 0
    F, lo, hi = len(rb.feet_sites), p.feet_air_time_min, p.feet_air_time_max
    air = _terms(env, command=(0.5, 0, 0), air=[0.8] * F, first=True)["feet_air_time"]
    gain = min(0.8 + env.task.dt - lo, math.inf if hi is None else hi - lo)
    assert air == pytest.approx(F * gain, abs=1e-5) and air > 0
    assert _terms(env, air=[0.8] * F, first=True)["feet_air_time"] == 0     # zero command: none
    if "feet_phase" in b:  # 1 when the feet are at the gait's target heights, less when they are not
        s = _state(env)
        target = swing_height(env.task.gait_phase(), p.max_foot_height)
        s.foot_z = target
        assert float(REWARD_FUNCTIONS["feet_phase"](env.task, s)) == pytest.approx(1.0)
        s.foot_z = target + 0.1
        assert float(REWARD_FUNCTIONS["feet_phase"](env.task, s)) == pytest.approx(math.exp(-F * 0.01 / p.feet_phase_sigma))


def test_swing_height_profile():
    h = 0.1
    phase = torch.tensor([-math.pi, -math.pi / 2, 0.0, math.pi / 2, math.pi - 1e-6])
    np.testing.assert_allclose(swing_height(phase, h).numpy(), [0.0, h / 2, h, h / 2, 0.0], atol=1e-6)


# ---------------------------------------------------------------- deploy twin
def _deploy_env_overrides(name: str) -> list[str]:
    """One observation frame and no command rate limit (the controller observes states of several envs in
    turn here; its history and its command ramp are each tested against training on their own:
    tests/test_observation_history.py, tests/test_command_rate_limit.py); a gait with the deploy loop's
    clock: the middle frequency, starting at phase 0."""
    gait = env_cfg(name).task_params.get("gait")
    if gait is None or not gait.enable:
        return list(ONE_FRAME)
    f = sum(gait.frequency) / 2
    return ONE_FRAME + [f"env.task_params.gait.frequency=[{f},{f}]", "env.task_params.gait.random_start=false"]


@pytest.mark.parametrize("name", ROBOTS)
def test_train_and_deploy_observations_are_equal(name, tmp_path):
    """As tests/test_deploy.py for the Go1: the deploy loop's observation of training states (reached with
    random actions: walking, falling, auto-resets) equals the task's noise-free one; the gait clock's
    time is the controller's ``time_s`` (the time since its reset)."""
    env = robot_env(4, *_deploy_env_overrides(name), env=robot_env_name(name))
    env.reset(seed=0)
    meta = env.metadata()
    robot = meta["robot"]
    harness = load_kit("harness").MujocoHarness(
        write_robot_policy(tmp_path / "policy.onnx", robot, task_id=meta["env_id"], engine=meta["engine"]))
    for s in robot.get("extra_sensors", []):
        assert mujoco.mj_name2id(harness.model, mujoco.mjtObj.mjOBJ_SENSOR, s["name"]) >= 0
    assert harness.robot.obs_dim == env.observation_space.shape[0]
    diffs = [np.abs(got - want).max()
             for got, want in deploy_and_training_observations(env, harness, steps=24)]
    env.close()
    print(f"{name}: train/deploy observation max |diff| over {len(diffs)} states: {max(diffs):.3g}")
    assert len(diffs) == 32 and max(diffs) < 1e-5, max(diffs)


# ------------------------------------------------------- train, export, deploy
@pytest.mark.parametrize("name", ROBOTS)
def test_train_export_deploy_and_replay(name, tmp_path, capsys):
    """Two PPO iterations on the CPU (8 envs, tiny nets), ONNX export, 1 s of the exported policy in the
    deploy loop, and robo-ppo-replay of the ONNX file (video off)."""
    from hydra import compose, initialize_config_dir

    from robo_ppo.export import export_checkpoint, read_metadata
    from robo_ppo.replay import _task, register_replay_config
    from robo_ppo.runner.trainer import Trainer

    cfg = make_cfg(f"env={robot_env_name(name)}", "engine.num_threads=1", "algo.num_envs=8", "algo.num_steps=8",
                   "algo.num_minibatches=2", "algo.update_epochs=2", "total_timesteps=128", "eval_episodes=1",
                   "env.max_episode_steps=16", "algo.actor_hidden_sizes=[16,16]",
                   "algo.critic_hidden_sizes=[16,16]")
    trainer = Trainer(cfg, tmp_path / "run")
    summary = trainer.train()
    trainer.close()
    assert summary["finished"] and summary["global_step"] == 128
    onnx_path = tmp_path / f"{name}.onnx"
    assert export_checkpoint(summary["checkpoint"], onnx_path)["max_abs_diff"] <= 1e-5
    meta = read_metadata(onnx_path)
    assert meta["robot"]["name"] == name and meta["act_dim"] == robot_expectations(name)["joints"]
    assert meta["obs_dim"] == policy_obs_dim(meta["robot"])
    result = load_kit("harness").run(onnx_path, [(1.0, 0.3, 0.0, 0.0)], seed=0)
    assert result["summary"]["sim_s"] == pytest.approx(1.0) and result["robot_name"] == name
    register_replay_config()
    out = tmp_path / "replay.json"
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        rcfg = compose("replay", overrides=[f"policy={onnx_path}", "schedule=[[0.5,0.2,0.0,0.0]]", "video=false",
                                            f"summary_json={out}"])
    _task(rcfg)
    assert f"robot {name}, 1 command segments" in capsys.readouterr().out
    replayed = json.loads(out.read_text())
    assert replayed["robot"] == name and len(replayed["segments"]) == 1 and replayed["video"] is None
