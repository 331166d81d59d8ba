"""The PPO update on the CPU compute path (``compute=numpy``).

The same algorithm as ``robo_ppo.algo.ppo.PPO.update`` (same minibatch
order, losses, advantage normalization, gradient clipping and Adam), with the
minibatch loss and gradient from ``NumpyActorCritic.loss_and_grad`` and the
optimizer step done in numpy on flat buffers. Why numpy on a CPU: see
``robo_ppo/modules/numpy_policy.py`` and docs/profile.md.

Adam's state lives in the torch optimizer's own ``state`` entries
(``step``, ``exp_avg``, ``exp_avg_sq``), re-seated as views of two flat
buffers, so checkpoints have the standard ``torch.optim.Adam`` format and a
run can resume with either compute path.
"""

from __future__ import annotations

import numpy as np
import torch

from robo_ppo.algo.ppo import PPO
from robo_ppo.algo.schedules import adaptive_lr
from robo_ppo.config import Loss, LRSchedule
from robo_ppo.modules.numpy_policy import NumpyActorCritic

STAT_KEYS = ("policy_loss", "value_loss", "entropy", "approx_kl", "clipfrac")


class NumpyPPO(PPO):
    """``PPO`` whose update runs in numpy on the policy's flat parameter buffer.

    Args:
        compute_policy: the ``NumpyActorCritic`` of the policy being trained.
        cfg, num_iterations: as for ``PPO``.
    """

    def __init__(self, compute_policy: NumpyActorCritic, cfg, num_iterations: int):
        super().__init__(compute_policy.policy, cfg, num_iterations)
        self.compute_policy = compute_policy
        self.flat_params = compute_policy.flat_params.numpy()
        self.exp_avg = np.zeros_like(self.flat_params)
        self.exp_avg_sq = np.zeros_like(self.flat_params)
        self._bind_adam_state()  # sets step_count

    def _bind_adam_state(self) -> None:
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

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self._bind_adam_state()

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

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """As ``PPO.update`` (same arguments, return value and errors)."""
        cfg = self.cfg
        data = {k: v.numpy() for k, v in batch.items() if v is not None}
        batch_size = data["obs"].shape[0]
        minibatch_size = batch_size // cfg.num_minibatches
        use_kl_loss = cfg.loss == Loss.kl
        adaptive = cfg.lr_schedule == LRSchedule.adaptive
        target_kl = cfg.target_kl
        needs_kl = adaptive or target_kl is not None
        update_epochs, num_minibatches = int(cfg.update_epochs), int(cfg.num_minibatches)
        max_grad_norm = float(cfg.max_grad_norm)
        loss_args = dict(clip_coef=float(cfg.clip_coef),
                         vf_clip=float(cfg.vf_clip_coef) if cfg.clip_vloss else None,
                         vf_coef=float(cfg.vf_coef), ent_coef=float(cfg.ent_coef),
                         norm_adv=bool(cfg.norm_adv))
        per_sample = [k for k in ("obs", "actions", "log_probs", "values", "advantages", "returns",
                                  "dist_params") if k in data]
        grad = self.compute_policy.flat_grad
        stats: list[dict[str, float]] = []
        kls: list[float] = []
        stop = False
        for epoch in range(update_epochs):
            stats.clear()
            # diagnostics are reported for the last epoch only (as in PPO.update), unless
            # the KL drives the learning rate or an early stop
            diagnostics = needs_kl or epoch == update_epochs - 1
            perm = torch.randperm(batch_size).numpy()  # torch's RNG: the same order as PPO.update
            for start in range(0, minibatch_size * num_minibatches, minibatch_size):
                idx = perm[start:start + minibatch_size]
                mb = {k: data[k][idx] for k in per_sample}
                if use_kl_loss:
                    mb["old_log_std"] = data.get("old_log_std")
                out = self.compute_policy.loss_and_grad(
                    mb, kl_beta=self.kl_beta if use_kl_loss else None, diagnostics=diagnostics, **loss_args)
                # global gradient-norm clip, as torch.nn.utils.clip_grad_norm_
                total_norm = np.sqrt(np.dot(grad, grad))
                grad *= np.float32(min(1.0, max_grad_norm / (float(total_norm) + 1e-6)))
                self._adam_step(grad)
                if diagnostics:
                    stats.append(out)
                if use_kl_loss:
                    kls.append(out["kl"])
                if needs_kl:
                    if adaptive:
                        self._set_lr(adaptive_lr(self.learning_rate, out["approx_kl"], cfg.desired_kl,
                                                 cfg.lr_min, cfg.lr_max))
                    if target_kl is not None and out["approx_kl"] > target_kl:
                        stop = True
                        break
            if stop:
                break
        for state in self.optimizer.state.values():
            state["step"].fill_(float(self.step_count))
        out = {k: float(np.mean([s[k] for s in stats])) for k in STAT_KEYS}
        return self._finish_update(out, float(np.mean(kls)) if use_kl_loss else None, stop)
