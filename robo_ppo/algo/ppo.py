"""The PPO update: minibatch epochs over one rollout batch.

Schulman et al. 2017 (PPO), with the implementation choices of OpenAI
Baselines' PPO2: Adam, minibatch epochs, per-minibatch advantage
normalization, value clipping, global gradient-norm clipping.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from robo_ppo.algo.losses import (
    approx_kl,
    clip_fraction,
    clipped_surrogate_loss,
    kl_penalty_loss,
    normalize_advantages,
    value_loss,
)
from robo_ppo.algo.schedules import adaptive_lr, linear_lr, update_kl_beta
from robo_ppo.config import Loss, LRSchedule
from robo_ppo.errors import NonFiniteError
from robo_ppo.modules.actor_critic import ActorCritic


class PPO:
    """Owns the optimizer and the schedule state (learning rate, KL beta).

    Args:
        policy: the actor-critic being trained.
        cfg: the ``algo`` config (see ``robo_ppo.config.PPOConfig``).
        num_iterations: total iterations of the run (for the linear anneal).
    """

    def __init__(self, policy: ActorCritic, cfg, num_iterations: int):
        self.policy = policy
        self.cfg = cfg
        self.num_iterations = int(num_iterations)
        self.learning_rate = float(cfg.learning_rate)
        self.kl_beta = float(cfg.kl_coef_init)
        # fused: one kernel for all parameters instead of ~10 ops per tensor (CPU and CUDA)
        self.optimizer = torch.optim.Adam(policy.parameters(), lr=self.learning_rate, eps=cfg.adam_eps,
                                          fused=True)

    # --------------------------------------------------------------- state
    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "learning_rate": self.learning_rate,
                "kl_beta": self.kl_beta}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.learning_rate = float(state["learning_rate"])
        self.kl_beta = float(state["kl_beta"])
        self._set_lr(self.learning_rate)

    def _set_lr(self, lr: float) -> None:
        self.learning_rate = lr
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def begin_iteration(self, iteration: int) -> None:
        """Apply the linear anneal for ``iteration`` (1-based)."""
        if self.cfg.lr_schedule == LRSchedule.linear:
            self._set_lr(linear_lr(self.cfg.learning_rate, iteration, self.num_iterations))

    # -------------------------------------------------------------- update
    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """Run ``update_epochs`` passes of minibatch gradient steps.

        ``batch`` holds flat ``[B, ...]`` tensors: ``obs`` (normalized),
        ``actions``, ``log_probs``, ``values``, ``advantages``, ``returns``,
        ``dist_params``, ``old_log_std`` ``[act_dim]`` (Gaussian only) and
        ``critic_obs`` (normalized; asymmetric critic only).
        Returns mean losses and diagnostics of the last epoch's minibatches.

        Raises:
            NonFiniteError: a loss became NaN/inf (checked once per update,
                to keep host syncs out of the minibatch loop; the trainer
                then stops without writing a checkpoint).
        """
        cfg = self.cfg
        batch_size = batch["obs"].shape[0]
        minibatch_size = batch_size // cfg.num_minibatches
        use_kl_loss = cfg.loss == Loss.kl
        adaptive = cfg.lr_schedule == LRSchedule.adaptive
        vclip = cfg.vf_clip_coef if cfg.clip_vloss else None
        stats: dict[str, list[torch.Tensor]] = {k: [] for k in
                                                ("policy_loss", "value_loss", "entropy", "approx_kl", "clipfrac")}
        kl_sum = torch.zeros((), device=batch["obs"].device)
        kl_count = 0
        stop = False
        # config values read once: OmegaConf attribute access costs microseconds per read
        clip_coef, ent_coef, vf_coef = float(cfg.clip_coef), float(cfg.ent_coef), float(cfg.vf_coef)
        max_grad_norm, norm_adv, target_kl = float(cfg.max_grad_norm), bool(cfg.norm_adv), cfg.target_kl
        update_epochs, num_minibatches = int(cfg.update_epochs), int(cfg.num_minibatches)
        needs_kl = adaptive or target_kl is not None
        params = list(self.policy.parameters())  # the optimizer's parameters, too
        obs, actions, old_log_probs = batch["obs"], batch["actions"], batch["log_probs"]
        critic_obs = batch.get("critic_obs")
        advantages, old_values, returns = batch["advantages"], batch["values"], batch["returns"]
        for epoch in range(update_epochs):
            for k in stats:
                stats[k].clear()
            # diagnostics are reported for the last epoch only: skip them before it
            # unless the KL drives the learning rate or an early stop
            diagnostics = needs_kl or epoch == update_epochs - 1
            perm = torch.randperm(batch_size, device=obs.device)
            for start in range(0, minibatch_size * num_minibatches, minibatch_size):
                idx = perm[start:start + minibatch_size]
                new_logp, entropy, new_values, new_params = self.policy.evaluate(
                    obs[idx], actions[idx], None if critic_obs is None else critic_obs[idx])
                log_ratio = new_logp - old_log_probs[idx]
                adv = advantages[idx]
                if norm_adv:
                    adv = normalize_advantages(adv)
                if diagnostics:
                    with torch.no_grad():
                        kl_est = approx_kl(log_ratio)
                        clipfrac = clip_fraction(log_ratio, clip_coef)
                if use_kl_loss:
                    exact_kl = self.policy.kl_from(batch["dist_params"][idx], batch.get("old_log_std"),
                                                   new_params)
                    pg_loss = kl_penalty_loss(log_ratio, adv, exact_kl, self.kl_beta)
                    kl_sum = kl_sum + exact_kl.detach().mean()
                    kl_count += 1
                else:
                    pg_loss = clipped_surrogate_loss(log_ratio, adv, clip_coef)
                v_loss = value_loss(new_values, old_values[idx], returns[idx], vclip)
                ent = entropy.mean()
                loss = pg_loss - ent_coef * ent + vf_coef * v_loss
                for p in params:  # = optimizer.zero_grad(set_to_none=True), without its wrapper
                    p.grad = None
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
                self.optimizer.step()
                if diagnostics:
                    stats["policy_loss"].append(pg_loss.detach())
                    stats["value_loss"].append(v_loss.detach())
                    stats["entropy"].append(ent.detach())
                    stats["approx_kl"].append(kl_est)
                    stats["clipfrac"].append(clipfrac)
                if needs_kl:
                    kl_value = float(kl_est)
                    if adaptive:
                        self._set_lr(adaptive_lr(self.learning_rate, kl_value, cfg.desired_kl,
                                                 cfg.lr_min, cfg.lr_max))
                    if target_kl is not None and kl_value > target_kl:
                        stop = True
                        break
            if stop:
                break
        out = {k: float(torch.stack(v).mean()) for k, v in stats.items() if v}
        mean_kl = float(kl_sum / max(kl_count, 1)) if use_kl_loss else None
        return self._finish_update(out, mean_kl, stop)

    def _finish_update(self, out: dict[str, float], mean_kl: Optional[float], stop: bool) -> dict[str, float]:
        """Shared tail of an update: reject non-finite losses, adapt PPO1's beta
        from the update's mean KL, and add the schedule state to the stats."""
        if not all(math.isfinite(v) for v in out.values()):
            raise NonFiniteError(
                f"the PPO loss became non-finite ({out}); lower algo.learning_rate or "
                "check the rewards/observations for extreme values")
        if mean_kl is not None:
            self.kl_beta = update_kl_beta(self.kl_beta, mean_kl, self.cfg.kl_target)
            out["kl"] = mean_kl
        out["kl_beta"] = self.kl_beta
        out["learning_rate"] = self.learning_rate
        out["early_stop"] = float(stop)
        return out
