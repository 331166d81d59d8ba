"""MuJoCo Warp engine for the physics seam (``robo_ppo/robots/physics.py``): every env is a Warp "world".

``MjWarpPhysics(model, num_envs, device)`` runs ``num_envs`` worlds of one model with MuJoCo Warp
(``mujoco_warp``) on CUDA (``device="cuda:k"``) or on Warp's CPU device (``device="cpu"``: slow,
for tests). Every tensor in and out is a torch view of the Warp arrays (``wp.to_torch``), so the
task reads ``qpos`` / ``qvel`` / ``sensordata`` without copies; nothing in ``step``, ``set_state``
or ``set_model`` reads a value back to the host.

Timing contract (``Physics``): data is always "after ``step1``". ``step`` runs ``nsubsteps`` x
(``mjw.step2``, ``mjw.step1``) holding ``ctrl``. MuJoCo Warp's ``step1`` zeroes the whole
``sensordata`` before it recomputes the position/velocity-stage sensors (C MuJoCo's ``mj_step1``
leaves acceleration-stage sensors alone), so ``step`` keeps the acceleration-stage columns
(accelerometer, actuator force, ...) of the last ``step2`` and writes them back.

Per-world model parameters: every field of ``RANDOMIZABLE`` is allocated per world by
``mjw.put_model(model, batch_sizes={field: num_envs})`` (Warp shape ``[N, ...]``, the MjModel
shape with a leading N) and written by ``set_model`` through torch views. Derived constants
(``body_invweight0``, ``dof_invweight0``, subtree masses) keep their nominal values, as they do
when C MuJoCo's ``MjModel`` fields are edited without ``mj_setConst``.

On CUDA the substep loop and ``forward`` are recorded once into CUDA graphs (``wp.ScopedCapture``,
one per ``nsubsteps``), which also keeps MuJoCo Warp's solver loop (``wp.capture_while``) from
syncing with the host; Warp's stream waits on torch's current stream before a graph and torch's
waits on Warp's after it (events, no host sync). On the CPU device kernels run eagerly.
"""

from __future__ import annotations

from collections.abc import Callable

import mujoco
import torch

try:
    import mujoco_warp as mjw
    import warp as wp
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError("MjWarpPhysics needs mujoco-warp: pip install mujoco-warp==4.0.0 warp-lang") from e

from robo_ppo.robots.physics import RANDOMIZABLE, Physics


def _quiet_warp() -> None:
    """Drop Warp's info logging (init banner, one line per module load); warnings stay."""
    wp.config.log_level = max(wp.config.log_level, wp.LOG_WARNING)


class MjWarpPhysics(Physics):
    """``num_envs`` MuJoCo Warp worlds of ``model``.

    Args:
        model: the nominal host model (sizes, names, nominal parameters).
        num_envs: N worlds.
        device: torch device: ``"cpu"`` (Warp's CPU device) or ``"cuda[:k]"`` (Warp ``"cuda:k"``).
        nconmax: contacts allocated per world (MuJoCo Warp's default heuristic if None).
        njmax: constraint rows allocated per world (default heuristic if None).
    """

    def __init__(self, model: mujoco.MjModel, num_envs: int, device: torch.device | str = "cpu",
                 nconmax: int | None = None, njmax: int | None = None):
        _quiet_warp()
        dev = torch.device(device)
        if dev.type == "cuda" and dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
        if dev.type not in ("cpu", "cuda"):
            raise ValueError(f"MjWarpPhysics runs on cpu or cuda, not {dev}")
        self.model, self.num_envs, self.device = model, int(num_envs), dev
        self._wp_device = wp.get_device("cpu" if dev.type == "cpu" else f"cuda:{dev.index}")
        with wp.ScopedDevice(self._wp_device):
            self._m = mjw.put_model(model, batch_sizes={name: self.num_envs for name in RANDOMIZABLE})
            self._m.opt.warn_overflow = 0  # else: a printed warning per step (e.g. solver iteration limit)
            self._d = mjw.make_data(model, nworld=self.num_envs, nconmax=nconmax, njmax=njmax)
        d = self._d
        self._qpos, self._qvel, self._ctrl = wp.to_torch(d.qpos), wp.to_torch(d.qvel), wp.to_torch(d.ctrl)
        self._act, self._warmstart = wp.to_torch(d.act), wp.to_torch(d.qacc_warmstart)
        self._sensor = wp.to_torch(d.sensordata)
        self._fields = {name: wp.to_torch(getattr(self._m, name)) for name in RANDOMIZABLE}
        # acceleration-stage sensor columns, bool [nsensordata]; their values saved after the last step2
        acc = torch.zeros(model.nsensordata, dtype=torch.bool)
        for i in range(model.nsensor):
            if model.sensor_needstage[i] == mujoco.mjtStage.mjSTAGE_ACC:
                acc[model.sensor_adr[i]:model.sensor_adr[i] + model.sensor_dim[i]] = True
        self._acc_cols = acc.to(dev)
        self._sensor_saved_wp = wp.zeros_like(d.sensordata)
        self._sensor_saved = wp.to_torch(self._sensor_saved_wp)
        self._graphs: dict[object, wp.Graph] = {}
        self._torch_streams: dict[int, wp.Stream] = {}
        self._run("forward", self._forward)  # the contract's "after step1" state from the start

    # ------------------------------------------------------------------ state
    @property
    def qpos(self) -> torch.Tensor:
        """float32 ``[N, nq]`` view of the worlds' ``qpos``."""
        return self._qpos

    @property
    def qvel(self) -> torch.Tensor:
        """float32 ``[N, nv]`` view of the worlds' ``qvel``."""
        return self._qvel

    @property
    def sensordata(self) -> torch.Tensor:
        """float32 ``[N, nsensordata]`` view of the worlds' ``sensordata``."""
        return self._sensor

    # ------------------------------------------------------------------ kernels
    def _forward(self) -> None:
        mjw.forward(self._m, self._d)

    def _substeps(self, nsubsteps: int) -> None:
        for i in range(nsubsteps):
            mjw.step2(self._m, self._d)
            if i == nsubsteps - 1:  # step1 zeroes sensordata: keep the acceleration-stage values
                wp.copy(self._sensor_saved_wp, self._d.sensordata)
            mjw.step1(self._m, self._d)

    def _run(self, key: object, fn: Callable[[], None]) -> None:
        """Run ``fn`` (MuJoCo Warp calls) after every queued torch op on ``device`` and before later ones.
        CUDA: replay its graph (recorded on first use) on Warp's stream, ordered against torch's
        current stream by events. CPU: call it."""
        if not self._wp_device.is_cuda:
            with wp.ScopedDevice(self._wp_device):
                fn()
            return
        warp_stream = self._wp_device.stream
        current = torch.cuda.current_stream(self.device)
        torch_stream = self._torch_streams.get(current.cuda_stream)
        if torch_stream is None:  # a Warp handle (and event) per torch stream, made once
            torch_stream = self._torch_streams[current.cuda_stream] = wp.stream_from_torch(current)
        warp_stream.wait_stream(torch_stream)
        graph = self._graphs.get(key)
        if graph is None:
            with wp.ScopedDevice(self._wp_device), wp.ScopedCapture(device=self._wp_device,
                                                                     stream=warp_stream) as capture:
                fn()
            graph = self._graphs[key] = capture.graph
        wp.capture_launch(graph, stream=warp_stream)
        torch_stream.wait_stream(warp_stream)

    # ------------------------------------------------------------------ seam
    def step(self, ctrl: torch.Tensor, nsubsteps: int) -> None:
        """Hold ``ctrl`` float32 ``[N, nu]`` for ``nsubsteps`` x (step2, step1)."""
        if nsubsteps < 1:
            raise ValueError(f"nsubsteps must be >= 1, got {nsubsteps}")
        self._ctrl.copy_(ctrl)
        self._run(("step", int(nsubsteps)), lambda: self._substeps(int(nsubsteps)))
        self._sensor.copy_(torch.where(self._acc_cols, self._sensor_saved, self._sensor))

    def set_state(self, mask: torch.Tensor, qpos: torch.Tensor, qvel: torch.Tensor, ctrl: torch.Tensor) -> None:
        """Where ``mask`` (bool ``[N]``): write ``qpos [N, nq]``, ``qvel [N, nv]``, ``ctrl [N, nu]``,
        zero ``act`` and the solver warm start (as ``mj_resetData``), and make every sensor current
        (``forward`` runs on all worlds; the sensor rows outside the mask are put back, so their
        acceleration-stage sensors keep the last physics step's values)."""
        rows = mask.to(device=self.device, dtype=torch.bool).reshape(-1, 1)
        for view, value in ((self._qpos, qpos), (self._qvel, qvel), (self._ctrl, ctrl)):
            view.copy_(torch.where(rows, value.to(device=self.device, dtype=view.dtype), view))
        self._act.masked_fill_(rows, 0.0)
        self._warmstart.masked_fill_(rows, 0.0)
        before = self._sensor.clone()
        self._run("forward", self._forward)
        self._sensor.copy_(torch.where(rows, self._sensor, before))

    def set_model(self, mask: torch.Tensor, fields: dict[str, torch.Tensor]) -> None:
        """Where ``mask`` (bool ``[N]``): write ``fields[name]`` float32 ``[N, *MjModel.<name>.shape]``."""
        mask = mask.to(device=self.device, dtype=torch.bool)
        for name, value in fields.items():
            if name not in self._fields:
                raise KeyError(f"set_model: {name!r} is not randomizable (RANDOMIZABLE: {', '.join(RANDOMIZABLE)})")
            view = self._fields[name]
            if tuple(value.shape) != tuple(view.shape):
                raise ValueError(f"set_model: {name} has shape {tuple(value.shape)}, expected {tuple(view.shape)}")
            rows = mask.reshape(-1, *([1] * (view.dim() - 1)))
            view.copy_(torch.where(rows, value.to(device=self.device, dtype=view.dtype), view))

    def _state_views(self) -> dict[str, torch.Tensor]:
        d = self._d
        return {"qpos": self._qpos, "qvel": self._qvel, "act": self._act, "ctrl": self._ctrl,
                "qacc_warmstart": self._warmstart, "time": wp.to_torch(d.time), "sensordata": self._sensor}

    def snapshot(self) -> dict[str, torch.Tensor]:
        """CPU copies of every world's ``qpos``, ``qvel``, ``act``, ``ctrl``, solver warm start, ``time``
        and ``sensordata``, and ``model``: the ``RANDOMIZABLE`` fields."""
        out = {k: v.detach().cpu().clone() for k, v in self._state_views().items()}
        out["model"] = {k: v.detach().cpu().clone() for k, v in self._fields.items()}
        return out

    def restore(self, snapshot: dict[str, torch.Tensor]) -> None:
        """Write a ``snapshot`` back, run ``step1`` (the contract's "after step1" data) and put the saved
        sensor values back (the acceleration-stage ones are the last physics step's)."""
        for views, source in ((self._state_views(), snapshot), (self._fields, snapshot["model"])):
            for k, view in views.items():
                if source is snapshot["model"] and k not in source:   # a field added after the snapshot was taken
                    continue
                if tuple(source[k].shape) != tuple(view.shape):
                    raise ValueError(f"the physics snapshot's {k} has shape {tuple(source[k].shape)}; this engine "
                                     f"has {tuple(view.shape)}")
                view.copy_(source[k].to(device=self.device, dtype=view.dtype))
        self._run("step1", lambda: mjw.step1(self._m, self._d))
        self._sensor.copy_(snapshot["sensordata"].to(self.device))

    def close(self) -> None:
        """Drop the graphs and the Warp model and data (device memory returns to Warp's pool)."""
        self._graphs.clear()
        self._torch_streams.clear()
        self._m = self._d = None


__all__ = ["MjWarpPhysics"]
