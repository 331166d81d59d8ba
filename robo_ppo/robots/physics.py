"""The physics seam: what a robot task needs from an engine, batched over environments in torch.

Tasks (``robo_ppo/tasks/``) are written against this class only; engines
(``robo_ppo/envs/mujoco_physics.py``: native MuJoCo on CPU threads,
``robo_ppo/envs/mjwarp_physics.py``: MuJoCo Warp on CUDA or Warp's CPU device)
implement it. It sits below the tasks, so no import runs from tasks up to engines.

Timing contract (the same on every engine, and the deploy loop's): the data
of every environment is always "after ``mj_step1``": ``qpos``, ``qvel`` and
position/velocity-stage sensors (IMU, frame, velocity, contact sensors)
describe the current state. ``step`` holds ``ctrl`` for ``nsubsteps`` physics
steps, each done as ``mj_step2`` then ``mj_step1`` (identical to ``mj_step``
for the Euler integrator, and it leaves the sensors current with no extra
``mj_forward``); acceleration-stage sensors (accelerometer, actuator force)
therefore hold the values of the last physics step. ``set_state`` runs a full
``mj_forward`` on the rows it writes.

Per-environment model parameters (domain randomization) are written with
``set_model``; the fields an engine must allow are ``RANDOMIZABLE``. ``set_substeps``
lets an env integrate each physics step in several shorter ones (native MuJoCo
only), for randomized damping too stiff for the model's step.

Exact resume: ``snapshot`` returns every env's simulator state (MuJoCo's
integration state: time, qpos, qvel, act, warm start, ctrl, ...; the sensors;
the randomized model fields) as tensors, and ``restore`` puts it back so the
next ``step`` computes what it would have computed without the interruption.
Divergence: ``bad_state`` reports the envs MuJoCo itself flagged since the last
call (bad qpos/qvel/qacc warnings); the env adapter adds its own finiteness and
bounds checks on top (``robo_ppo/envs/robot_env.py``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import mujoco
import torch

RANDOMIZABLE = ("geom_friction", "body_mass", "body_ipos", "dof_frictionloss", "dof_armature",
                "dof_damping", "actuator_gainprm", "actuator_biasprm", "pair_friction")
"""``MjModel`` fields ``set_model`` writes per environment (``pair_friction``: the explicit contact pairs'
friction, which replaces the geoms' where a scene touches the floor through ``<pair>``s, as the G1's).
A snapshot taken before a field was added restores without it (the field keeps its current values)."""


class Physics(ABC):
    """``num_envs`` copies of one MuJoCo model, stepped as a batch.

    Attributes:
        model: the nominal host ``mujoco.MjModel`` (names, sizes, nominal parameters).
        num_envs: N.
        device: where the tensors below live.
    """

    model: mujoco.MjModel
    num_envs: int
    device: torch.device

    @property
    @abstractmethod
    def qpos(self) -> torch.Tensor:
        """float32 ``[N, nq]``: joint positions (read-only; ``set_state`` writes)."""

    @property
    @abstractmethod
    def qvel(self) -> torch.Tensor:
        """float32 ``[N, nv]``: joint velocities (read-only)."""

    @property
    @abstractmethod
    def sensordata(self) -> torch.Tensor:
        """float32 ``[N, nsensordata]``: sensor values (read-only), see the timing contract."""

    @abstractmethod
    def step(self, ctrl: torch.Tensor, nsubsteps: int) -> None:
        """Advance every env ``nsubsteps`` physics steps holding ``ctrl`` float32 ``[N, nu]``."""

    @abstractmethod
    def set_state(self, mask: torch.Tensor, qpos: torch.Tensor, qvel: torch.Tensor, ctrl: torch.Tensor) -> None:
        """Where ``mask`` (bool ``[N]``): write ``qpos [N, nq]``, ``qvel [N, nv]``, ``ctrl [N, nu]``
        (rows outside the mask are ignored) and run ``mj_forward`` so every sensor is current."""

    @abstractmethod
    def set_model(self, mask: torch.Tensor, fields: dict[str, torch.Tensor]) -> None:
        """Where ``mask`` (bool ``[N]``): write per-env model parameters, ``fields[name]`` float32
        ``[N, *shape of MjModel.<name>]`` for names in ``RANDOMIZABLE``. Takes effect at the next
        ``step`` / ``set_state``."""

    per_env_substeps: bool = False
    """Whether ``set_substeps`` can give an env more than one integration step per physics step."""

    def set_substeps(self, mask: torch.Tensor, substeps: torch.Tensor) -> None:
        """Where ``mask`` (bool ``[N]``): integrate each of the env's physics steps as ``substeps`` (int64
        ``[N]``, >= 1) steps of ``timestep / substeps``, ``ctrl`` held (the actuators, the PD law's
        included, are evaluated at every one). 1 is the model's own step. Used where a randomized model's
        added damping would integrate unstably at the model's step (``randomize_model.damping_substeps``).

        Raises:
            NotImplementedError: a value > 1 on an engine that steps every env at the model's timestep.
        """
        if bool((substeps[mask.to(substeps.device)] != 1).any()):
            raise NotImplementedError(f"{type(self).__name__} integrates every env at the model's timestep; "
                                      f"per-env substeps need engine=mujoco")

    def snapshot(self) -> dict[str, torch.Tensor]:
        """Every env's simulator state and randomized model fields, as CPU tensors (checkpoint-safe)."""
        raise NotImplementedError(f"{type(self).__name__} cannot snapshot its state")

    def restore(self, snapshot: dict[str, torch.Tensor]) -> None:
        """Put back a ``snapshot`` of an engine of the same model and ``num_envs``.

        Raises:
            ValueError: the snapshot's shapes do not fit this engine.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot restore a snapshot")

    def bad_state(self) -> torch.Tensor | None:
        """bool ``[N]``: envs the engine flagged as diverged (MuJoCo's bad qpos/qvel/qacc warnings)
        since the last call, then cleared; ``None`` where the engine raises no such flag."""
        return None

    def nominal(self, name: str) -> torch.Tensor:
        """float32 ``MjModel.<name>`` of the nominal model, on ``device``."""
        return torch.as_tensor(getattr(self.model, name), dtype=torch.float32, device=self.device).clone()

    def close(self) -> None:  # noqa: B027 - engines without resources keep the no-op
        """Release threads or device memory."""


__all__ = ["Physics", "RANDOMIZABLE"]
