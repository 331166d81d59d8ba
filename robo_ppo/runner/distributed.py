"""Data-parallel PPO over ``torch.distributed`` (processes started by ``torchrun``).

Weak scaling, as in rsl_rl and rl_games: every rank (process) steps its own
``algo.num_envs`` environments and collects its own rollout; an update's
batch is the union of all ranks' rollouts, ``world_size`` times one rank's.
What keeps the ranks one learner:

* the parameters (and normalizer buffers) are broadcast from rank 0 at start
  and after a resume;
* each minibatch's gradient is averaged over the ranks with one all-reduce of
  the flattened gradient, before the global-norm clip and the Adam step, so
  every rank takes the identical step (``grad_mean_``);
* the KL values that drive decisions (``target_kl`` early stop, the adaptive
  learning rate, PPO1's beta) are averaged over the ranks (``scalar_mean``);
* the observation statistics fold in the moments of *all* ranks' rollout
  observations (``merge_moments_across_ranks``), and the reward scaler's
  per-step sums are summed over the ranks (``sum_across_ranks``), so both
  equal a single learner's over all ``world_size * num_envs`` environments;
* a stop request (SIGINT/SIGTERM) on any rank stops every rank after the same
  iteration (``any_rank``).

The ranks of one node share its cores: a CPU engine's ``num_threads: 0`` (one
thread per core: EnvPool, native MuJoCo) becomes each rank's share, and the
update's torch threads (``update_threads``) are capped at it
(``cores_per_rank``; ``Trainer._join_data_parallel``, ``rank_engine_config``).

Rank 0 alone writes files (logs, TensorBoard, checkpoints, ONNX). Backends:
``gloo`` on the CPU, ``nccl`` on CUDA. Without ``torchrun`` (no ``RANK`` /
``WORLD_SIZE`` in the environment) nothing here runs and training is the
plain single-process loop. Commands: docs/distributed.md.
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch
import torch.distributed as dist

from robo_ppo.errors import ConfigError
from robo_ppo.modules.normalizer import merge_moments

log = logging.getLogger("robo_ppo")

TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
"""What ``torchrun`` sets for each worker; all present = launched by torchrun."""


def cores_per_rank(local_world_size: int) -> int:
    """One rank's share of this node's usable cores (the CPU affinity mask where the
    OS has one, else the core count) when ``local_world_size`` ranks share the node;
    at least 1. What a rank's engine threads (``num_threads: 0``) and its torch
    threads in the update are capped at, so the ranks do not oversubscribe the cores."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, int(local_world_size)))


def launched_by_torchrun() -> bool:
    """Whether this process is a worker started by ``torchrun`` (or an
    equivalent launcher that sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
    ``MASTER_ADDR`` and ``MASTER_PORT``)."""
    return all(k in os.environ for k in TORCHRUN_VARS)


def env_rank() -> int:
    """This process's global rank from the environment (0 outside torchrun)."""
    return int(os.environ.get("RANK", "0")) if launched_by_torchrun() else 0


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in a data-parallel job.

    ``rank`` in ``[0, world_size)``; ``local_rank`` its index on its node
    (the GPU it uses); ``local_world_size`` the ranks on this node;
    ``device`` the tensor device of collectives (``cuda:<local_rank>`` with
    NCCL, the CPU with gloo).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    backend: Optional[str] = None
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        """A process group is up (also with ``--nproc_per_node=1``: its overhead is measurable)."""
        return self.backend is not None

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes files."""
        return self.rank == 0

    @property
    def cores_per_rank(self) -> int:
        """This rank's share of its node's cores (``cores_per_rank(local_world_size)``)."""
        return cores_per_rank(self.local_world_size)

    # ------------------------------------------------------------ collectives
    def broadcast_module_(self, module: torch.nn.Module) -> None:
        """Overwrite ``module``'s parameters and buffers with rank 0's, in
        place (views into them, such as the numpy twin's flat buffer, stay valid)."""
        if not self.enabled:
            return
        with torch.no_grad():
            for t in list(module.parameters()) + list(module.buffers()):
                self._in_place(lambda x: dist.broadcast(x, src=0), t.data)

    def grad_mean_(self, flat_grad: torch.Tensor) -> None:
        """Average a flat gradient buffer over the ranks, in place (one
        all-reduce; every rank ends with the same bytes)."""
        dist.all_reduce(flat_grad, op=dist.ReduceOp.SUM)
        flat_grad.div_(self.world_size)

    def scalar_mean(self, value: Any) -> float:
        """Mean of a scalar (float or 0-d tensor) over the ranks, as a float."""
        t = torch.as_tensor(value, dtype=torch.float64).reshape(1).to(self.device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return float(t) / self.world_size

    def any_rank(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on at least one."""
        if not self.enabled:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def sum_across_ranks(self, x, num_envs: int):
        """Reward-scaler hook: ``x`` (numpy or tensor, float64) summed over the
        ranks in place; returns ``(x, num_envs * world_size)``."""
        t = torch.from_numpy(x) if isinstance(x, np.ndarray) else x
        self._in_place(lambda y: dist.all_reduce(y, op=dist.ReduceOp.SUM), t)
        return x, num_envs * self.world_size

    def _in_place(self, collective, t: torch.Tensor) -> None:
        """Run an in-place ``collective`` on ``t``, through a copy on the
        collectives' device when ``t`` lives elsewhere (NCCL needs CUDA tensors)."""
        if t.device == self.device:
            collective(t)
        else:
            tmp = t.to(self.device)
            collective(tmp)
            t.copy_(tmp)

    def merge_moments_across_ranks(self, mean, var, count: float):
        """Observation-normalizer hook: one rank's batch moments (``mean``,
        population ``var`` ``[D]``, ``count``) -> the moments of all ranks'
        batches together. All ranks' ``(count, mean, var)`` are gathered in
        float64 and folded in rank order with the parallel-variance formula
        (``merge_moments``, Chan et al. 1979), so every rank gets the same
        bits. Numpy in -> numpy out; tensors in -> tensors out."""
        is_numpy = isinstance(mean, np.ndarray)
        m = torch.as_tensor(mean, dtype=torch.float64).reshape(-1)
        v = torch.as_tensor(var, dtype=torch.float64).reshape(-1)
        packed = torch.cat([torch.tensor([float(count)], dtype=torch.float64, device=m.device), m, v])
        packed = packed.to(self.device)
        parts = [torch.empty_like(packed) for _ in range(self.world_size)]
        dist.all_gather(parts, packed)
        d = m.numel()
        out_m, out_v, out_n = parts[0][1:1 + d], parts[0][1 + d:], float(parts[0][0])
        for p in parts[1:]:
            out_m, out_v, out_n = merge_moments(out_m, out_v, out_n, p[1:1 + d], p[1 + d:], float(p[0]))
        shape = np.shape(mean)
        if is_numpy:
            return out_m.cpu().numpy().reshape(shape), out_v.cpu().numpy().reshape(shape), out_n
        return out_m.to(mean.device).reshape(shape), out_v.to(mean.device).reshape(shape), out_n

    def gather_objects(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (picklable), in rank order, on every rank."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def init_distributed(device: str) -> DistContext:
    """Join the ``torchrun`` job this process belongs to, or return the
    single-process context when not launched by ``torchrun``.

    ``device``: the run's ``device`` setting. CUDA (``auto`` with a GPU, or
    ``cuda``) uses NCCL with ``cuda:<LOCAL_RANK>``; the CPU uses gloo.

    Raises:
        ConfigError: ``device`` names one CUDA index for every rank of a
            multi-GPU node (each rank needs its own GPU), or a CUDA device
            without CUDA.
    """
    if not launched_by_torchrun():
        return DistContext()
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ["LOCAL_RANK"])
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        if not torch.cuda.is_available():
            raise ConfigError(f"device={device} but CUDA is not available; use device=cpu (gloo)")
        if ":" in device and local_world > 1:
            raise ConfigError(f"device={device} pins every rank to one GPU; under torchrun use "
                              "device=cuda or device=auto (rank r uses cuda:<LOCAL_RANK>)")
        dev = torch.device(device if ":" in device else f"cuda:{local_rank}")
        torch.cuda.set_device(dev)
        if local_world > 1:  # JAX (Brax/MJX) would preallocate 75% of every visible GPU in every rank
            os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
        backend = "nccl"
    else:
        dev, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=30),
                                **({"device_id": dev} if backend == "nccl" else {}))
    ctx = DistContext(rank=rank, world_size=world, local_rank=local_rank, local_world_size=local_world,
                      backend=backend, device=dev)
    log.info("data-parallel: rank %d of %d (local rank %d, backend %s, device %s)",
             rank, world, local_rank, backend, dev)
    return ctx


def shutdown_distributed(barrier: bool = True) -> None:
    """Tear down the process group (a no-op outside torchrun). ``barrier``: first wait until every rank
    got here, so no rank tears its gloo connections down while a peer still uses them (seen once in CI:
    a rank aborted with "terminate called without an active exception"); pass ``False`` on an error
    path, where a peer may never arrive."""
    if dist.is_available() and dist.is_initialized():
        if barrier:
            dist.barrier()
        dist.destroy_process_group()
