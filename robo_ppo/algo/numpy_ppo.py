"""The PPO update on the CPU compute path (``compute=numpy``).

``PPO.update``'s loop (same minibatch order, KL checks, schedules and
diagnostics) over ``NumpyKernel``: the minibatch loss and gradient from
``NumpyActorCritic.loss_and_grad`` and the gradient clip and Adam step in
numpy on flat buffers. Why numpy on a CPU: see
``robo_ppo/modules/numpy_policy.py`` and docs/profile.md.

Adam's state lives in the torch optimizer's own ``state`` entries
(``step``, ``exp_avg``, ``exp_avg_sq``), re-seated as views of two flat
buffers, so checkpoints have the standard ``torch.optim.Adam`` format and a
run can resume with either compute path.

``NumpyPPO.check_kernel`` guards the hand-written gradient at run time: it
runs the numpy gradient code and torch autograd in float64 on a copy of the
current parameters and compares them (``algo.kernel_check_interval``).
"""

from __future__ import annotations

import copy
import math
from typing import Any, Optional

import numpy as np
import torch

from robo_ppo.algo.ppo import PPO, LossSettings, TorchKernel
from robo_ppo.config import Loss
from robo_ppo.errors import ConfigError, KernelMismatchError
from robo_ppo.modules.numpy_policy import NumpyActorCritic

KERNEL_CHECK_RTOL = 1e-6
"""Largest accepted ``|g_numpy - g_autograd| / |g_autograd|`` per parameter
tensor, both computed in float64 (``NumpyPPO.check_kernel``). Measured
agreement of correct code: ~1e-15 (tests/test_ppo_update.py); float32
rounding alone is ~1e-6, a ReLU unit on the other side of its kink 1e-3."""

PER_SAMPLE = ("obs", "actions", "log_probs", "values", "advantages", "returns", "dist_params")


class NumpyKernel:
    """One minibatch's loss and gradient in numpy (``NumpyActorCritic``); the
    step is the global gradient-norm clip and Adam on the flat buffers.

    Args:
        compute_policy: the ``NumpyActorCritic`` of the policy being trained.
        optimizer: the PPO's ``torch.optim.Adam`` over the policy's
            parameters; its ``lr``, betas and eps are read at every step and
            its state entries become views of ``exp_avg`` / ``exp_avg_sq``.
        cfg: the ``algo`` config.
    """

    def __init__(self, compute_policy: NumpyActorCritic, optimizer: torch.optim.Optimizer, cfg):
        self.compute_policy = compute_policy
        self.policy = compute_policy.policy
        self.optimizer = optimizer
        self.device = torch.device("cpu")
        s = LossSettings(cfg)
        if s.uses_mirror:
            raise ConfigError("compute=numpy has no symmetry loss or augmentation (algo.symmetry_coef > 0, "
                              "algo.symmetry_augmentation): use compute=torch")
        self.max_grad_norm = s.max_grad_norm
        self.stat_keys = s.stat_keys(compute_policy.is_discrete)
        self.loss_args = dict(clip_coef=s.clip_coef, vf_clip=s.vf_clip, vf_coef=s.vf_coef,
                              ent_coef=s.ent_coef, norm_adv=s.norm_adv, bounds_coef=s.bounds_coef)
        self.flat_params = compute_policy.flat_params.numpy()
        self.grad = compute_policy.flat_grad
        self.exp_avg = np.zeros_like(self.flat_params)
        self.exp_avg_sq = np.zeros_like(self.flat_params)
        self.step_count = 0
        self.data: dict[str, np.ndarray] = {}
        self.per_sample: list[str] = []
        self.grad_sync = None  # data-parallel: averages the flat gradient over the ranks (PPO.data_parallel)
        self.bind_adam_state()

    # ------------------------------------------------------------ Adam state
    def bind_adam_state(self) -> None:
        """Copy Adam's per-parameter state (if any) into the flat buffers and
        re-seat the optimizer's state tensors as views of them."""
        offset = 0
        m, v = torch.from_numpy(self.exp_avg), torch.from_numpy(self.exp_avg_sq)
        steps = set()
        for p in self.policy.parameters():
            n = p.numel()
            state = self.optimizer.state[p]
            if "exp_avg" in state:
                m[offset:offset + n] = state["exp_avg"].reshape(-1)
                v[offset:offset + n] = state["exp_avg_sq"].reshape(-1)
                steps.add(int(state["step"]))
            else:
                m[offset:offset + n] = 0.0
                v[offset:offset + n] = 0.0
                steps.add(0)
            state["exp_avg"] = m[offset:offset + n].view_as(p)
            state["exp_avg_sq"] = v[offset:offset + n].view_as(p)
            offset += n
        if len(steps) != 1:
            raise ValueError(f"optimizer state has different step counts per parameter: {sorted(steps)}")
        self.step_count = steps.pop()
        for p in self.policy.parameters():
            self.optimizer.state[p]["step"] = torch.tensor(float(self.step_count))

    def _adam_step(self, grad: np.ndarray) -> None:
        """``torch.optim.Adam``'s update (Kingma & Ba 2015, Algorithm 1, with
        torch's placement of eps), in place on the flat buffers:
        ``m <- m + (1 - b1)(g - m)``, ``v <- b2 v + (1 - b2) g^2``,
        ``p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)``."""
        group = self.optimizer.param_groups[0]
        beta1, beta2 = group["betas"]
        self.step_count += 1
        t = self.step_count
        m, v, p = self.exp_avg, self.exp_avg_sq, self.flat_params
        m += (1.0 - beta1) * (grad - m)
        v *= beta2
        v += (1.0 - beta2) * grad * grad
        denom = np.sqrt(v) / np.float32(np.sqrt(1.0 - beta2 ** t))
        denom += np.float32(group["eps"])
        p -= np.float32(group["lr"] / (1.0 - beta1 ** t)) * m / denom

    # --------------------------------------------------------------- kernel
    def begin(self, batch: dict[str, torch.Tensor]) -> None:
        """Take the update's batch as numpy views (no copies)."""
        self.data = {k: v.numpy() for k, v in batch.items() if v is not None}
        self.per_sample = [k for k in PER_SAMPLE if k in self.data]

    def indices(self, perm: torch.Tensor) -> np.ndarray:
        """The minibatch order as a numpy index array (one conversion per epoch)."""
        return perm.numpy()

    def loss_and_grad(self, idx: np.ndarray, kl_beta: Optional[float], diagnostics: bool) -> dict[str, Any]:
        """As ``TorchKernel.loss_and_grad``, floats out; the gradient goes to
        ``compute_policy.flat_grad``."""
        data = self.data
        mb = {k: data[k][idx] for k in self.per_sample}
        if kl_beta is not None:
            mb["old_log_std"] = data.get("old_log_std")
        return self.compute_policy.loss_and_grad(mb, kl_beta=kl_beta, diagnostics=diagnostics, **self.loss_args)

    def step(self) -> None:
        """Global gradient-norm clip (as ``torch.nn.utils.clip_grad_norm_``), then Adam.
        Data-parallel: the flat gradient is first averaged over the ranks."""
        grad = self.grad
        if self.grad_sync is not None:
            self.grad_sync(torch.from_numpy(grad))  # in place: the tensor shares the array's memory
        total_norm = np.sqrt(np.dot(grad, grad))
        grad *= np.float32(min(1.0, self.max_grad_norm / (float(total_norm) + 1e-6)))
        self._adam_step(grad)

    def end(self) -> None:
        """Write the step count back into the optimizer's state (checkpoints)."""
        for state in self.optimizer.state.values():
            state["step"].fill_(float(self.step_count))

    def mean_stats(self, stats: list[dict[str, Any]]) -> dict[str, float]:
        return {k: float(np.mean([s[k] for s in stats])) for k in self.stat_keys}

    def final_kl(self) -> float:
        """Exact mean KL(rollout policy || current policy) over the whole batch."""
        d = self.data
        return self.compute_policy.mean_kl(d["obs"], d["dist_params"], d.get("old_log_std"))


class NumpyPPO(PPO):
    """``PPO`` whose minibatch arithmetic is a ``NumpyKernel``.

    Args:
        compute_policy: the ``NumpyActorCritic`` of the policy being trained.
        cfg, num_iterations: as for ``PPO``.
    """

    def __init__(self, compute_policy: NumpyActorCritic, cfg, num_iterations: int):
        self.compute_policy = compute_policy
        super().__init__(compute_policy.policy, cfg, num_iterations)

    def _make_kernel(self) -> NumpyKernel:
        return NumpyKernel(self.compute_policy, self.optimizer, self.cfg)

    # Adam's flat state, for inspection (tests, checkpoints go through the optimizer)
    @property
    def exp_avg(self) -> np.ndarray:
        return self.kernel.exp_avg

    @property
    def exp_avg_sq(self) -> np.ndarray:
        return self.kernel.exp_avg_sq

    @property
    def step_count(self) -> int:
        return self.kernel.step_count

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.kernel.bind_adam_state()

    def check_kernel(self, batch: dict[str, torch.Tensor], iteration: Optional[int] = None) -> dict[str, float]:
        """Check the hand-written gradient against torch autograd, both in float64.

        The minibatch is every ``num_minibatches``-th sample of ``batch`` (no
        RNG draw, so checking does not change the run); the loss is the
        update's (same ``kl_beta``). A float64 copy of the policy (current
        parameters and normalizer) is run through this kernel's code
        (``NumpyActorCritic.loss_and_grad``, the same code as in training, on
        float64 arrays) and through torch autograd (``TorchKernel``), on the
        minibatch cast to float64. Per parameter tensor, the relative
        difference ``|g_numpy - g_autograd| / |g_autograd|`` (Euclidean norms;
        the denominator floored at 1e-6 of the whole gradient's norm, so a
        parameter whose gradient is only rounding noise cannot trip it) must
        stay within ``KERNEL_CHECK_RTOL``.

        Why float64: in float32 the two computations may legitimately differ
        by far more than the summation order, because a ReLU pre-activation
        (or a PPO/value clip boundary) within rounding of its kink may fall on
        either side of it. Measured on Humanoid-v5 with ``preset=fast``
        (iteration 1, 512 samples, 128x128 ReLU): float32 autograd differed
        from float64 autograd by 2.1e-3 on ``actor.0.weight`` because of one
        unit (pre-activation +1.1e-7 in float64, -8.9e-8 in float32), while
        the float32 numpy gradient was within 2.6e-6 of float64; in float64
        such a flip needs a pre-activation within ~1e-16 of zero. A wrong
        formula differs at any precision and is still caught.

        Also checks that the policy's parameters are still the views of the
        flat buffer this kernel trains (``NumpyActorCritic``). Leaves
        parameters, optimizer, RNG and ``.grad`` as they were. When the
        float64 loss itself is not finite, nothing is judged: the update's
        non-finite check reports that.

        Returns ``{parameter name: relative difference}``.

        Raises:
            KernelMismatchError: naming the parameter with the largest
                difference (or the one no longer backed by the flat buffer).
        """
        when = "" if iteration is None else f" in iteration {iteration}"
        advice = ("the run stopped without checkpointing this iteration: continue it with compute=torch "
                  "(resume=<run dir> compute=torch) and report this as a bug")
        flat = self.compute_policy.flat_params
        offset = 0
        for name, p in self.policy.named_parameters():
            if p.data_ptr() != flat[offset:].data_ptr():
                raise KernelMismatchError(f"parameter {name} is no longer a view of the numpy compute path's "
                                          f"flat buffer{when}, so the numpy kernel does not train it; {advice}")
            offset += p.numel()
        cfg = self.cfg
        batch_size, num_minibatches = batch["obs"].shape[0], int(cfg.num_minibatches)
        idx = torch.arange(0, (batch_size // num_minibatches) * num_minibatches, num_minibatches)
        kl_beta = self.kl_beta if cfg.loss == Loss.kl else None
        policy64 = copy.deepcopy(self.policy).double()
        batch64 = {k: v.double() if v.is_floating_point() else v for k, v in batch.items() if v is not None}
        twin = NumpyKernel(NumpyActorCritic(policy64), torch.optim.SGD(policy64.parameters(), lr=0.0), cfg)
        twin.begin(batch64)
        twin.loss_and_grad(idx.numpy(), kl_beta, diagnostics=False)
        numpy_grad = twin.grad
        reference = TorchKernel(policy64, twin.optimizer, cfg)
        reference.begin(batch64)
        ref = reference.loss_and_grad(idx, kl_beta, diagnostics=False)
        if not bool(torch.isfinite(ref["loss"])):
            return {}
        flat_torch = torch.cat([torch.zeros(p.numel(), dtype=p.dtype) if p.grad is None else p.grad.reshape(-1)
                                for p in policy64.parameters()]).numpy()
        floor = 1e-6 * float(np.linalg.norm(flat_torch)) + 1e-300
        rel, offset = {}, 0
        for name, p in policy64.named_parameters():
            n = p.numel()
            g_t, g_n = flat_torch[offset:offset + n], numpy_grad[offset:offset + n]
            rel[name] = float(np.linalg.norm(g_n - g_t)) / max(float(np.linalg.norm(g_t)), floor)
            offset += n
        bad = {k: v for k, v in rel.items() if not v <= KERNEL_CHECK_RTOL}  # NaN is bad, too
        if bad:
            worst = max(bad, key=lambda k: math.inf if math.isnan(bad[k]) else bad[k])
            raise KernelMismatchError(
                f"the numpy compute path's gradient of {worst} differs from torch autograd by "
                f"{bad[worst]:.3g} (relative, both in float64; limit {KERNEL_CHECK_RTOL:g}){when}; {advice}")
        return rel
