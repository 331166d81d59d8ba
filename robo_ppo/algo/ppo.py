"""The PPO update: minibatch epochs over one rollout batch.

Schulman et al. 2017 (PPO), with the implementation choices of OpenAI
Baselines' PPO2: Adam, minibatch epochs, per-minibatch advantage
normalization, value clipping, global gradient-norm clipping.

One loop, two kernels. ``PPO.update`` owns everything that decides *which*
steps are taken (epochs, the minibatch order from ``torch.randperm``, the
``target_kl`` stop, the learning-rate schedule, PPO1's beta, the reported
diagnostics, the non-finite check). A kernel owns only the arithmetic of one
minibatch: ``loss_and_grad`` (loss terms, diagnostics and the gradient) and
``step`` (global gradient-norm clip and Adam). ``TorchKernel`` (here) uses
autograd and the torch optimizer; ``NumpyKernel``
(``robo_ppo/algo/numpy_ppo.py``) the hand-written numpy gradient and a numpy
Adam on the same memory.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Optional

import torch

from robo_ppo.algo.losses import (
    approx_kl,
    bounds_loss,
    clip_fraction,
    clipped_surrogate_loss,
    kl_penalty_loss,
    normalize_advantages,
    symmetry_loss,
    value_loss,
)
from robo_ppo.algo.schedules import adaptive_lr, linear_lr, update_kl_beta
from robo_ppo.config import Loss, LRSchedule
from robo_ppo.errors import NonFiniteError
from robo_ppo.modules.actor_critic import ActorCritic

STAT_KEYS = ("policy_loss", "value_loss", "entropy", "approx_kl", "clipfrac")
"""Per-minibatch diagnostics a kernel returns (with ``diagnostics=True``); the
update reports their means over the last epoch's minibatches."""

BOUNDS_STAT = "bounds_loss"
"""The extra diagnostic of a run with ``algo.bounds_loss_coef > 0`` (``bounds_loss``, unweighted)."""

SYMMETRY_STAT = "symmetry_loss"
"""The extra diagnostic of a run with ``algo.symmetry_coef > 0`` or ``algo.symmetry_augmentation``
(``symmetry_loss``, unweighted)."""


class LossSettings:
    """The loss coefficients, read once from the ``algo`` config (OmegaConf
    attribute access costs microseconds per read, too slow for the minibatch loop)."""

    def __init__(self, cfg):
        self.clip_coef = float(cfg.clip_coef)
        self.vf_clip = float(cfg.vf_clip_coef) if cfg.clip_vloss else None
        self.vf_coef = float(cfg.vf_coef)
        self.ent_coef = float(cfg.ent_coef)
        self.bounds_coef = float(cfg.bounds_loss_coef)
        self.symmetry_coef = float(cfg.symmetry_coef)
        self.augment = bool(cfg.symmetry_augmentation)
        self.norm_adv = bool(cfg.norm_adv)
        self.max_grad_norm = float(cfg.max_grad_norm)
        self.uses_mirror = self.symmetry_coef > 0 or self.augment
        """The symmetry loss or the augmentation is on: the update needs the env's mirror maps."""

    def stat_keys(self, discrete: bool) -> tuple[str, ...]:
        """The diagnostics a kernel reports: ``STAT_KEYS``, then ``BOUNDS_STAT`` and ``SYMMETRY_STAT``
        where those terms are on (a Gaussian policy with ``bounds_loss_coef`` > 0; with ``symmetry_coef``
        > 0 or ``symmetry_augmentation``)."""
        return STAT_KEYS + tuple(key for key, on in ((BOUNDS_STAT, self.bounds_coef > 0),
                                                     (SYMMETRY_STAT, self.uses_mirror))
                                 if on and not discrete)


class TorchKernel:
    """One minibatch's loss and gradient by torch autograd; the step is
    ``clip_grad_norm_`` and the optimizer's (fused Adam) step.

    Args:
        policy: the actor-critic (any device; asymmetric critic supported).
        optimizer: the optimizer over ``policy.parameters()``.
        cfg: the ``algo`` config.
    """

    def __init__(self, policy: ActorCritic, optimizer: torch.optim.Optimizer, cfg):
        self.policy = policy
        self.optimizer = optimizer
        self.params = list(policy.parameters())  # the optimizer's parameters, too
        self.device = self.params[0].device
        self.s = LossSettings(cfg)
        self.stat_keys = self.s.stat_keys(policy.is_discrete)
        self.batch: dict[str, torch.Tensor] = {}
        self.grad_sync: Optional[Callable[[torch.Tensor], None]] = None
        """Data-parallel runs: averages a flat gradient over the ranks in place (``PPO.data_parallel``)."""
        self.mirror: Optional[tuple[Any, Any]] = None
        """``(obs, action)`` mirror maps (``robo_ppo.robots.symmetry.Mirror`` on the policy's device) of
        the symmetry loss (``PPO.set_mirror``)."""
        self._mirror_obs: Optional[tuple] = None

    def begin(self, batch: dict[str, torch.Tensor]) -> None:
        """Take the update's batch (flat ``[B, ...]`` tensors, see ``PPO.update``); with the symmetry
        loss or augmentation, fix the normalized observations' mirror map at the normalizer's current
        statistics."""
        self.batch = batch
        if SYMMETRY_STAT in self.stat_keys:
            if self.mirror is None:
                raise ValueError("algo.symmetry_coef > 0 and algo.symmetry_augmentation need the env's mirror "
                                 "maps (PPO.set_mirror)")
            self._mirror_obs = self._normalized_mirror()

    def _normalized_mirror(self) -> tuple:
        """``(perm, scale, shift, mix)`` with ``mirror(n) = clip(scale * n[:, perm] + shift)`` then, per
        mixing block, ``[:, rows] += n[:, cols] @ weight.T + bias`` the normalized image of the raw mirror
        ``raw' = sign * raw[perm]`` (+ ``raw[cols] @ matrix.T`` on ``rows``): with ``raw = n std + mean``,
        ``scale_i = sign_i std_perm(i) / std_i``, ``shift_i = (sign_i mean_perm(i) - mean_i) / std_i``,
        ``weight = matrix std_cols / std_rows`` and ``bias = (matrix @ mean_cols) / std_rows``."""
        perm, sign, mix = self.mirror[0].perm, self.mirror[0].sign, self.mirror[0].mix
        normalizer = self.policy.obs_normalizer
        if normalizer is None:
            return perm, sign, torch.zeros_like(sign), tuple((r, c, m, torch.zeros_like(m[:, 0])) for r, c, m in mix)
        mean = normalizer.rms.mean.to(sign.dtype)
        std = torch.sqrt(normalizer.rms.var + normalizer.eps).to(sign.dtype)
        mix = tuple((r, c, m * std[c] / std[r][:, None], (m @ mean[c]) / std[r]) for r, c, m in mix)
        return perm, sign * std[perm] / std, (sign * mean[perm] - mean) / std, mix

    def mirrored_obs(self, norm_obs: torch.Tensor) -> torch.Tensor:
        """The normalized observations ``[B, obs_dim]`` of the mirrored states (``begin``'s map)."""
        perm, scale, shift, mix = self._mirror_obs
        out = norm_obs[:, perm] * scale + shift
        for rows, cols, weight, bias in mix:
            out[:, rows] += norm_obs[:, cols] @ weight.T + bias
        normalizer = self.policy.obs_normalizer
        return out if normalizer is None else out.clamp(-normalizer.clip, normalizer.clip)

    def indices(self, perm: torch.Tensor) -> torch.Tensor:
        """The minibatch order in the kernel's index type (a tensor here)."""
        return perm

    def loss_and_grad(self, idx: torch.Tensor, kl_beta: Optional[float], diagnostics: bool) -> dict[str, Any]:
        """Loss of the minibatch ``idx`` at the current parameters; its gradient
        goes to the parameters' ``.grad``. ``kl_beta``: PPO1's penalty
        coefficient (KL loss), ``None`` for the clipped surrogate.

        Returns ``self.stat_keys`` as 0-d tensors (no host sync) and ``loss``; only
        ``loss`` with ``diagnostics=False``. ``approx_kl`` is measured at the
        parameters before any step on this minibatch.
        """
        loss, terms = self.loss_terms(idx, kl_beta)
        for p in self.params:  # = optimizer.zero_grad(set_to_none=True), without its wrapper
            p.grad = None
        loss.backward()
        out: dict[str, Any] = {"loss": loss.detach()}
        if diagnostics:
            with torch.no_grad():
                lr = terms["log_ratio"].detach()
                out |= {"policy_loss": terms["policy_loss"].detach(), "value_loss": terms["value_loss"].detach(),
                        "entropy": terms["entropy"].detach(), "approx_kl": approx_kl(lr),
                        "clipfrac": clip_fraction(lr, self.s.clip_coef)}
                out |= {k: terms[k].detach() for k in (BOUNDS_STAT, SYMMETRY_STAT) if k in terms}
        return out

    def loss_terms(self, idx: torch.Tensor, kl_beta: Optional[float]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The differentiable part of ``loss_and_grad``: the minibatch ``idx``'s
        loss (0-d) and its terms ``policy_loss``, ``value_loss``, ``entropy``,
        ``bounds_loss`` and ``symmetry_loss`` (0-d; where on) and ``log_ratio [B]``. One function of tensors, so it can be
        handed to ``torch.compile`` (``benchmarks/compiled_torch.py``).

        With ``symmetry_augmentation`` the policy terms (surrogate, entropy) run over the
        minibatch and its mirror image (Mittal et al. 2024, "Symmetry Considerations for Learning Task
        Symmetric Robot Policies"): each sample ``(o, a, A)`` adds ``(Psi_o(o), Psi_a(a), A)``. Its ratio's
        denominator is the rollout's ``pi_old(a | o)``, the density of the mirrored sample under the
        mirror image of the rollout policy (``Psi_a`` is a signed permutation, ``|det| = 1``), and its
        advantage is the sample's own, as in a mirror-symmetric task. The value loss and the reported
        ``log_ratio`` (approx_kl, clipfrac) stay on the rollout's samples."""
        b, s = self.batch, self.s
        critic_obs, obs, actions = b.get("critic_obs"), b["obs"][idx], b["actions"][idx]
        old_logp, adv = b["log_probs"][idx], b["advantages"][idx]
        if s.norm_adv:
            adv = normalize_advantages(adv)
        if s.augment:
            n, mirror = obs.shape[0], self.mirror[1]
            new_logp, entropy, both_params = self.policy.evaluate_actions(
                torch.cat([obs, self.mirrored_obs(obs)]), torch.cat([actions, actions[:, mirror.perm] * mirror.sign]))
            new_values = self.policy.get_value(obs if critic_obs is None else critic_obs[idx])
            new_params, mirrored_params = both_params[:n], both_params[n:]
            all_log_ratio, adv = new_logp - old_logp.repeat(2), adv.repeat(2)
            log_ratio = all_log_ratio[:n]
        else:
            new_logp, entropy, new_values, new_params = self.policy.evaluate(
                obs, actions, None if critic_obs is None else critic_obs[idx])
            all_log_ratio = log_ratio = new_logp - old_logp
        if kl_beta is None:
            pg_loss = clipped_surrogate_loss(all_log_ratio, adv, s.clip_coef)
        else:  # the train-time checks refuse kl_penalty with the augmentation
            exact_kl = self.policy.kl_from(b["dist_params"][idx], b.get("old_log_std"), new_params)
            pg_loss = kl_penalty_loss(log_ratio, adv, exact_kl, kl_beta)
        v_loss = value_loss(new_values, b["values"][idx], b["returns"][idx], s.vf_clip)
        ent = entropy.mean()
        loss = pg_loss - s.ent_coef * ent + s.vf_coef * v_loss
        terms = {"policy_loss": pg_loss, "value_loss": v_loss, "entropy": ent, "log_ratio": log_ratio}
        if BOUNDS_STAT in self.stat_keys:
            terms[BOUNDS_STAT] = b_loss = bounds_loss(new_params, self.policy.action_low, self.policy.action_high)
            loss = loss + s.bounds_coef * b_loss
        if SYMMETRY_STAT in self.stat_keys:
            if not s.augment:
                mirrored_params = self.policy.actor(self.mirrored_obs(obs))
            action = self.mirror[1]
            terms[SYMMETRY_STAT] = m_loss = symmetry_loss(new_params, mirrored_params, action.perm, action.sign)
            if s.symmetry_coef > 0:
                loss = loss + s.symmetry_coef * m_loss
        return loss, terms

    def step(self) -> None:
        """Global gradient-norm clip, then the optimizer step. Data-parallel:
        the gradient is first averaged over the ranks as one flat buffer."""
        if self.grad_sync is not None:
            flat = torch.cat([p.grad.reshape(-1) for p in self.params])
            self.grad_sync(flat)
            offset = 0
            for p in self.params:
                p.grad = flat[offset:offset + p.numel()].view_as(p)
                offset += p.numel()
        torch.nn.utils.clip_grad_norm_(self.params, self.s.max_grad_norm)
        self.optimizer.step()

    def end(self) -> None:
        """Nothing to hand back: the optimizer keeps its own state."""

    def mean_stats(self, stats: list[dict[str, Any]]) -> dict[str, float]:
        """Means of ``self.stat_keys`` over the minibatches' outputs (one host sync per key)."""
        return {k: float(torch.stack([s[k] for s in stats]).mean()) for k in self.stat_keys}

    @torch.no_grad()
    def final_kl(self) -> float:
        """Exact mean KL(rollout policy || current policy) over the whole batch."""
        b = self.batch
        new_params = self.policy.actor(b["obs"])
        return float(self.policy.kl_from(b["dist_params"], b.get("old_log_std"), new_params).mean())


class PPO:
    """Owns the optimizer, the schedule state (learning rate, KL beta) and the
    update loop; the minibatch arithmetic is its kernel's (``TorchKernel``).

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
        self.kernel = self._make_kernel()
        self.rank_mean: Optional[Callable[[Any], float]] = None
        """Data-parallel runs: the mean of a scalar over the ranks (``data_parallel``)."""

    def data_parallel(self, grad_mean: Callable[[torch.Tensor], None], scalar_mean: Callable[[Any], float]) -> None:
        """Make this learner one of several data-parallel ranks: each
        minibatch gradient is averaged over the ranks (``grad_mean``, in place
        on a flat buffer) before the clip and the step, and the KL values that
        drive the update's decisions (early stop, adaptive learning rate,
        PPO1's beta) are their mean over the ranks (``scalar_mean``), so every
        rank takes the same steps. See ``robo_ppo/runner/distributed.py``."""
        self.kernel.grad_sync = grad_mean
        self.rank_mean = scalar_mean

    def set_mirror(self, obs_mirror, action_mirror) -> None:
        """Give the symmetry loss (``algo.symmetry_coef``) its maps: ``obs_mirror`` over the raw policy
        input and ``action_mirror`` over the actions (``robo_ppo.robots.symmetry.Mirror``; moved to the
        policy's device here).

        Raises:
            ValueError: a map's size is not the policy's observation or action size.
        """
        for what, mirror, size in (("observation", obs_mirror, self.policy.obs_dim),
                                   ("action", action_mirror, self.policy.act_dim)):
            if len(mirror.perm) != size:
                raise ValueError(f"the {what} mirror map has {len(mirror.perm)} entries; the policy's {what} "
                                 f"has {size}")
        device = next(self.policy.parameters()).device
        self.kernel.mirror = (obs_mirror.to(device), action_mirror.to(device))

    def _kl(self, value: Any) -> float:
        """A KL statistic as a float: this rank's, or the mean over the ranks."""
        return float(value) if self.rank_mean is None else self.rank_mean(value)

    def _make_kernel(self):
        return TorchKernel(self.policy, self.optimizer, self.cfg)

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

    def check_kernel(self, batch: dict[str, torch.Tensor], iteration: Optional[int] = None) -> None:
        """Cross-check the kernel against torch autograd (``algo.kernel_check_interval``).
        The torch kernel *is* autograd: nothing to check here (see ``NumpyPPO``)."""

    # -------------------------------------------------------------- update
    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """Run ``update_epochs`` passes of minibatch gradient steps.

        ``batch`` holds flat ``[B, ...]`` tensors: ``obs`` (normalized),
        ``actions``, ``log_probs``, ``values``, ``advantages``, ``returns``,
        ``dist_params``, ``old_log_std`` ``[act_dim]`` (Gaussian only) and
        ``critic_obs`` (normalized; asymmetric critic only).

        Each minibatch: the kernel computes its loss and gradient at the
        current parameters, which gives the approx KL (k3 estimator) of that
        minibatch between the rollout policy and the current one *before* its
        step. With ``target_kl`` set and that KL above it, the step is not
        applied and the update ends (Stable-Baselines3's semantics: no step is
        taken from parameters already past the limit); otherwise the kernel
        steps, and the ``adaptive`` schedule sets the next step's learning
        rate from that KL. With ``loss=kl``, PPO1's beta is then adapted from
        the exact KL(rollout policy || updated policy) over the whole batch
        (Schulman et al. 2017, sec. 4), reported as ``kl``.

        Returns mean losses and diagnostics of the last epoch's minibatches
        (with an early stop: those of the epoch that stopped, the rejected
        minibatch included), plus ``kl`` (KL loss), ``kl_beta``,
        ``learning_rate`` and ``early_stop``.

        Raises:
            NonFiniteError: a loss became NaN/inf (checked once per update,
                to keep host syncs out of the minibatch loop; the trainer
                then stops without writing a checkpoint).
        """
        cfg, kernel = self.cfg, self.kernel
        batch_size = batch["obs"].shape[0]
        # config values read once: OmegaConf attribute access costs microseconds per read
        update_epochs, num_minibatches = int(cfg.update_epochs), int(cfg.num_minibatches)
        minibatch_size = batch_size // num_minibatches
        use_kl_loss = cfg.loss == Loss.kl
        adaptive = cfg.lr_schedule == LRSchedule.adaptive
        target_kl = None if cfg.target_kl is None else float(cfg.target_kl)
        desired_kl, lr_min, lr_max = float(cfg.desired_kl), float(cfg.lr_min), float(cfg.lr_max)
        # the minibatch KL is read on the host only when it drives a decision
        needs_kl = adaptive or target_kl is not None
        kernel.begin(batch)
        reported: list[dict[str, Any]] = []
        stop = False
        for epoch in range(update_epochs):
            # diagnostics are reported for the last epoch only: skip them before it
            # unless the KL drives the learning rate or an early stop
            diagnostics = needs_kl or epoch == update_epochs - 1
            stats: list[dict[str, Any]] = []
            perm = kernel.indices(torch.randperm(batch_size, device=kernel.device))
            for start in range(0, minibatch_size * num_minibatches, minibatch_size):
                out = kernel.loss_and_grad(perm[start:start + minibatch_size],
                                           self.kl_beta if use_kl_loss else None, diagnostics)
                if diagnostics:
                    stats.append(out)
                if needs_kl:
                    kl_value = self._kl(out["approx_kl"])  # a host sync on an accelerator
                    if target_kl is not None and kl_value > target_kl:
                        stop = True  # before the step: it is not applied
                        break
                kernel.step()
                if adaptive:
                    self._set_lr(adaptive_lr(self.learning_rate, kl_value, desired_kl, lr_min, lr_max))
            if stats:
                reported = stats
            if stop:
                break
        kernel.end()
        out = kernel.mean_stats(reported)
        if use_kl_loss:
            out["kl"] = self._kl(kernel.final_kl())
        if not all(math.isfinite(v) for v in out.values()):
            raise NonFiniteError(
                f"the PPO loss became non-finite ({out}); lower algo.learning_rate or "
                "check the rewards/observations for extreme values")
        if use_kl_loss:
            self.kl_beta = update_kl_beta(self.kl_beta, out["kl"], float(cfg.kl_target))
        out["kl_beta"] = self.kl_beta
        out["learning_rate"] = self.learning_rate
        out["early_stop"] = float(stop)
        return out
