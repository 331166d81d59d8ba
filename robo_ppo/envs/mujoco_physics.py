"""Native MuJoCo on CPU threads: the ``Physics`` seam over one ``MjModel`` / ``MjData`` per environment.

Each environment owns a copy of the model (domain randomization writes into
it) and its ``MjData``. ``step`` splits the environments into ``num_threads``
contiguous chunks and steps each chunk on a thread of a persistent pool;
MuJoCo's Python bindings release the GIL inside ``mj_step1`` / ``mj_step2``,
so the threads step in parallel, and each writes its rows of ``qpos``,
``qvel`` and ``sensordata`` into shared float64 arrays. Torch reads those
through one float32 copy per step (``torch.from_numpy``; the task math is
float32).

Why not ``mujoco.rollout``: it restarts the constraint solver's warm start at
every call (one call per control step), which changes the physics of a
one-iteration solver like the Go1's against a continuously stepped robot
(the deploy loop); here each ``MjData`` keeps its warm start. Measured on the
2-core machine (docs/profile.md): this loop reaches about 87 % of
``mujoco.rollout``'s raw ``mj_step`` throughput with 2 threads.

A diverging env: MuJoCo's own checks (``mj_checkPos/Vel/Acc``) warn and reset
its ``MjData`` to the model's reference state, which also sets its clock
``time`` back. Every step compares each env's ``time`` with the time it must
have reached (reading one float per env is ~50x cheaper than reading the
warning counters) and ``bad_state`` reports the envs whose clock jumped, so
the task resets them properly and the learner drops that step
(``robo_ppo/envs/robot_env.py``). MuJoCo prints a warning only the first time
each kind occurs in an ``MjData``; the counters of these kinds start at 1 so
that a run with thousands of envs does not print thousands of lines (the run
counts them in ``physics/diverged`` instead).
"""

from __future__ import annotations

import copy
import os
from concurrent.futures import ThreadPoolExecutor

import mujoco
import numpy as np
import torch

from robo_ppo.robots.physics import RANDOMIZABLE, Physics

STATE_SPEC = mujoco.mjtState.mjSTATE_INTEGRATION
"""What a snapshot keeps of each ``MjData`` (time, qpos, qvel, act, warm start, ctrl, applied forces, ...)."""
BAD_STATE_WARNINGS = tuple(int(w) for w in (mujoco.mjtWarning.mjWARN_BADQPOS, mujoco.mjtWarning.mjWARN_BADQVEL,
                                            mujoco.mjtWarning.mjWARN_BADQACC))
"""MuJoCo warnings that mean the simulation diverged (MuJoCo resets the data when it raises them)."""


class MujocoPhysics(Physics):
    """Args:
        model: the nominal model (copied per environment).
        num_envs: N.
        num_threads: worker threads (0: one per core).
    """

    def __init__(self, model: mujoco.MjModel, num_envs: int, num_threads: int = 0):
        self.model = model
        self.num_envs = n = int(num_envs)
        self.device = torch.device("cpu")
        self.models = [copy.copy(model) for _ in range(n)]
        self.datas = [mujoco.MjData(m) for m in self.models]
        self._qpos = np.zeros((n, model.nq))
        self._qvel = np.zeros((n, model.nv))
        self._sensordata = np.zeros((n, model.nsensordata))
        self._ctrl = np.zeros((n, model.nu))
        self._bad = np.zeros(n, dtype=bool)
        self._time = np.zeros(n)
        self._substeps = np.ones(n, dtype=np.int64)   # integration steps per physics step (set_substeps)
        threads = num_threads or os.cpu_count() or 1
        bounds = np.linspace(0, n, min(threads, n) + 1).astype(int)
        self._chunks = [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]
        self._pool = ThreadPoolExecutor(len(self._chunks)) if len(self._chunks) > 1 else None
        for i, (m, d) in enumerate(zip(self.models, self.datas, strict=True)):
            for w in BAD_STATE_WARNINGS:
                d.warning[w].number = 1   # MuJoCo prints only a first warning of a kind
            mujoco.mj_forward(m, d)
            self._read(i)
        self._tensors()

    # ------------------------------------------------------------- helpers
    def _read(self, i: int) -> None:
        d = self.datas[i]
        self._qpos[i], self._qvel[i], self._sensordata[i] = d.qpos, d.qvel, d.sensordata
        self._time[i] = d.time

    def _tensors(self) -> None:
        self._t_qpos = torch.from_numpy(self._qpos.astype(np.float32))
        self._t_qvel = torch.from_numpy(self._qvel.astype(np.float32))
        self._t_sensordata = torch.from_numpy(self._sensordata.astype(np.float32))

    def _run_chunk(self, lo: int, hi: int, nsubsteps: int) -> None:
        # nsubsteps x (step2, step1) done as step2, (nsubsteps - 1) x mj_step, step1: the same
        # computation for the Euler integrator (mj_step = step1 + step2) in fewer calls
        step, step1, step2 = mujoco.mj_step, mujoco.mj_step1, mujoco.mj_step2
        models, datas, ctrl, substeps = self.models, self.datas, self._ctrl, self._substeps
        for i in range(lo, hi):
            m, d = models[i], datas[i]
            d.ctrl[:] = ctrl[i]
            step2(m, d)
            for _ in range(nsubsteps * int(substeps[i]) - 1):   # each at timestep / substeps[i]
                step(m, d)
            step1(m, d)
            self._read(i)

    # ----------------------------------------------------------------- seam
    @property
    def qpos(self) -> torch.Tensor:
        return self._t_qpos

    @property
    def qvel(self) -> torch.Tensor:
        return self._t_qvel

    @property
    def sensordata(self) -> torch.Tensor:
        return self._t_sensordata

    def step(self, ctrl: torch.Tensor, nsubsteps: int) -> None:
        self._ctrl[:] = ctrl.detach().cpu().numpy()
        dt = self.model.opt.timestep
        expected = self._time + nsubsteps * dt
        if self._pool is None:
            self._run_chunk(0, self.num_envs, nsubsteps)
        else:
            for f in [self._pool.submit(self._run_chunk, lo, hi, nsubsteps) for lo, hi in self._chunks]:
                f.result()
        self._bad |= np.abs(self._time - expected) > 0.5 * dt   # MuJoCo reset the data: it diverged
        self._tensors()

    def set_state(self, mask: torch.Tensor, qpos: torch.Tensor, qvel: torch.Tensor, ctrl: torch.Tensor) -> None:
        rows = np.flatnonzero(mask.cpu().numpy())
        if not len(rows):
            return
        qpos, qvel, ctrl = (x.detach().cpu().double().numpy() for x in (qpos, qvel, ctrl))
        for i in rows:
            m, d = self.models[i], self.datas[i]
            d.qpos[:], d.qvel[:], d.ctrl[:] = qpos[i], qvel[i], ctrl[i]
            d.qacc_warmstart[:] = 0.0   # a new start for the solver (as MuJoCo Warp's set_state)
            mujoco.mj_forward(m, d)
            self._read(i)
        self._tensors()

    def set_model(self, mask: torch.Tensor, fields: dict[str, torch.Tensor]) -> None:
        rows = np.flatnonzero(mask.cpu().numpy())
        for name, values in fields.items():
            if name not in RANDOMIZABLE:
                raise KeyError(f"{name!r} is not a randomizable model field ({RANDOMIZABLE})")
            values = values.detach().cpu().double().numpy()
            for i in rows:
                getattr(self.models[i], name)[...] = values[i]

    per_env_substeps = True

    def set_substeps(self, mask: torch.Tensor, substeps: torch.Tensor) -> None:
        """Each masked env's model gets ``timestep / substeps[i]`` and ``step`` runs ``substeps[i]`` times as
        many steps of it (``Physics.set_substeps``).

        Raises:
            ValueError: a value < 1.
        """
        rows = np.flatnonzero(mask.cpu().numpy())
        values = substeps.detach().cpu().numpy().astype(np.int64)
        if len(rows) and values[rows].min() < 1:
            raise ValueError(f"substeps must be >= 1, got {values[rows].min()}")
        for i in rows:
            self._substeps[i] = values[i]
            self.models[i].opt.timestep = self.model.opt.timestep / values[i]

    def bad_state(self) -> torch.Tensor:
        bad = torch.from_numpy(self._bad.copy())
        self._bad[:] = False
        return bad

    def snapshot(self) -> dict[str, torch.Tensor]:
        """``integration``: float64 ``[N, mj_stateSize(mjSTATE_INTEGRATION)]``; ``sensordata`` float64
        ``[N, nsensordata]`` (the acceleration-stage sensors are the last physics step's); ``model``:
        each ``RANDOMIZABLE`` field float64 ``[N, *shape]``; ``substeps`` int64 ``[N]``."""
        state = np.empty((self.num_envs, mujoco.mj_stateSize(self.model, STATE_SPEC)))
        for i, (m, d) in enumerate(zip(self.models, self.datas, strict=True)):
            mujoco.mj_getState(m, d, state[i], STATE_SPEC)
        model = {name: torch.from_numpy(np.stack([getattr(m, name) for m in self.models])) for name in RANDOMIZABLE}
        return {"integration": torch.from_numpy(state), "sensordata": torch.from_numpy(self._sensordata.copy()),
                "model": model, "substeps": torch.from_numpy(self._substeps.copy())}

    def restore(self, snapshot: dict[str, torch.Tensor]) -> None:
        """Write the model fields and substeps and ``mj_setState`` each env, then ``mj_step1`` (the timing contract's
        "after step1": the same position/velocity-stage data the interrupted run had) and put the saved
        sensor values back."""
        state, sensordata = snapshot["integration"].numpy(), snapshot["sensordata"].numpy()
        expected = (self.num_envs, mujoco.mj_stateSize(self.model, STATE_SPEC))
        if state.shape != expected or sensordata.shape != self._sensordata.shape:
            raise ValueError(f"the physics snapshot holds states {state.shape} and sensors {sensordata.shape}; this "
                             f"engine has {expected} and {self._sensordata.shape}")
        model = {name: snapshot["model"][name].numpy() for name in RANDOMIZABLE if name in snapshot["model"]}
        # (a snapshot from before per-env substeps: every env at the model's step)
        self.set_substeps(torch.ones(self.num_envs, dtype=torch.bool),
                          snapshot.get("substeps", torch.ones(self.num_envs, dtype=torch.int64)))
        for i, (m, d) in enumerate(zip(self.models, self.datas, strict=True)):
            for name, values in model.items():
                getattr(m, name)[...] = values[i]
            mujoco.mj_setState(m, d, state[i], STATE_SPEC)
            mujoco.mj_step1(m, d)
            d.sensordata[:] = sensordata[i]
            self._read(i)
        self._bad[:] = False
        self._tensors()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


__all__ = ["MujocoPhysics"]
