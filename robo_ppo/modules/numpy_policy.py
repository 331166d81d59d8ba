"""The CPU compute path: the actor-critic's math in numpy, on the same memory.

Why: on a CPU, PPO's networks are tiny (64x64 MLPs, 1 to 1024 rows), so the
time goes to per-call overhead, not arithmetic. On the project's 2-core
machine one eager torch op costs ~5-12 us and one numpy op ~1-4 us; a 1-row
policy step is ~60 torch ops, a 64-sample PPO minibatch ~300 torch ops plus
autograd. Doing the same arithmetic in numpy is 4-5x faster (measurements in
docs/profile.md).

What: ``NumpyActorCritic`` wraps an ``ActorCritic`` that lives on the CPU.
It re-seats every parameter as a view into one flat float32 buffer
(``flat_params``; a float64 policy gets a float64 buffer, which is how the
run-time gradient check runs this same code in float64) and reads weights, biases, ``log_std`` and the normalizer
statistics through numpy views of that memory, so the torch module (used for
checkpoints, evaluation and ONNX export) and the numpy path always see the
same numbers, with no copies. It provides

* the rollout calls (``normalize``, ``act``, ``get_value``,
  ``update_normalizer``) with the same names as ``ActorCritic``'s, but numpy
  arrays in and out, so the trainer drives an ``ArrayVecEnv`` and this
  object with no torch call per step;
* ``loss_and_grad``: one minibatch's PPO loss and its gradient with respect
  to ``flat_params``, written by hand (backpropagation through the MLPs).
  ``tests/test_numpy_policy.py`` checks it against torch autograd for every
  head, loss, activation and clipping branch, and a training run re-checks
  one minibatch every ``algo.kernel_check_interval`` iterations
  (``NumpyPPO.check_kernel``).

It mirrors only the module structure it was written for and refuses anything
else with ``UnsupportedModuleError`` (``check_mirrorable``), so a change to
the torch module cannot make the two paths differ quietly.

Conventions follow the torch path exactly: ``nn.Linear`` computes
``x @ W.T + b``; ``torch.maximum``'s gradient is split evenly on ties and
``torch.clamp``'s passes where the input lies inside the closed interval.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch import nn

from robo_ppo.modules.actor_critic import ACTIVATIONS as TORCH_ACTIVATIONS
from robo_ppo.modules.actor_critic import LOG_2PI, ActorCritic, PolicyOutput
from robo_ppo.modules.normalizer import ObsNormalizer, RunningMeanStd

ENTROPY_CONST = 0.5 * (1.0 + LOG_2PI)


# --------------------------------------------------------------- activations
def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _silu_grad(x, y):
    s = _sigmoid(x)  # SiLU(x) = x s(x); derivative s(x) (1 + x (1 - s(x)))
    return s * (1.0 + x * (1.0 - s))


# name -> (f(x), f'(x) given the input x and the output y = f(x)), as torch.nn's modules
ACTIVATIONS = {
    "tanh": (np.tanh, lambda x, y: 1.0 - y * y),
    "relu": (lambda x: np.maximum(x, 0.0), lambda x, y: (x > 0).astype(x.dtype)),
    # ELU(alpha=1): x if x > 0 else exp(x) - 1; derivative 1 or exp(x) = y + 1
    "elu": (lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0.0))),
            lambda x, y: np.where(x > 0, 1.0, y + 1.0).astype(x.dtype)),
    "silu": (lambda x: x * _sigmoid(x), _silu_grad),
}


def _max_grad_weights(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gradient weights of ``torch.maximum(a, b)`` w.r.t. ``a`` and ``b``:
    1 to the larger input, 1/2 to each on a tie."""
    tie = 0.5 * (a == b)
    return (a > b) + tie, (b > a) + tie


class UnsupportedModuleError(ValueError):
    """The policy has a part the numpy compute path does not mirror exactly;
    the message names it. ``compute=auto`` then trains with torch."""


def check_mirrorable(policy: nn.Module) -> None:
    """Accept only what ``NumpyActorCritic`` computes exactly: an ``ActorCritic``
    (not a subclass) whose actor and critic are ``nn.Sequential`` of
    ``nn.Linear`` (with bias) alternating with the configured activation
    (``nn.ELU`` with alpha 1), the ``ObsNormalizer`` or none, no asymmetric
    critic, exactly the known parameters (all trainable) and buffers, and no
    module hooks.

    Raises:
        UnsupportedModuleError: naming the first part that does not fit.
    """
    def refuse(what: str):
        raise UnsupportedModuleError(f"the numpy compute path does not mirror {what}")

    if type(policy) is not ActorCritic:
        refuse(f"a {type(policy).__name__} (only ActorCritic itself)")
    if policy.critic_obs_dim is not None:
        refuse(f"an asymmetric critic (critic_obs_dim={policy.critic_obs_dim})")
    if policy.activation not in ACTIVATIONS or policy.activation not in TORCH_ACTIVATIONS:
        refuse(f"activation {policy.activation!r}")
    activation = TORCH_ACTIVATIONS[policy.activation]
    expected_params = set() if policy.is_discrete else {"log_std"}
    for net in ("actor", "critic"):
        seq = getattr(policy, net)
        if type(seq) is not nn.Sequential:
            refuse(f"{net} of type {type(seq).__name__} (only nn.Sequential)")
        for i, m in enumerate(seq):
            want = nn.Linear if i % 2 == 0 else activation
            if type(m) is not want:
                refuse(f"{net}.{i} ({type(m).__name__}; expected {want.__name__} there)")
            if want is nn.Linear:
                if m.bias is None:
                    refuse(f"{net}.{i} (Linear without bias)")
                expected_params |= {f"{net}.{i}.weight", f"{net}.{i}.bias"}
            elif isinstance(m, nn.ELU) and m.alpha != 1.0:
                refuse(f"{net}.{i} (ELU with alpha={m.alpha}; only alpha=1)")
        if len(seq) % 2 == 0:
            refuse(f"{net} with {len(seq)} modules (Linear, then pairs of activation and Linear)")
    norm = policy.obs_normalizer
    if norm is not None and (type(norm) is not ObsNormalizer or type(norm.rms) is not RunningMeanStd):
        refuse(f"obs_normalizer of type {type(norm).__name__} (only ObsNormalizer)")
    if getattr(policy, "critic_obs_normalizer", None) is not None:
        refuse("a critic observation normalizer")
    params = dict(policy.named_parameters())
    extra, missing = sorted(set(params) - expected_params), sorted(expected_params - set(params))
    if extra or missing:
        refuse(f"parameters {extra or missing} ({'unknown' if extra else 'missing'})")
    frozen = [name for name, p in params.items() if not p.requires_grad]
    if frozen:
        refuse(f"frozen parameters {frozen} (requires_grad=False)")
    expected_buffers = set() if policy.is_discrete else {"action_low", "action_high"}
    if norm is not None:
        expected_buffers |= {"obs_normalizer.rms.mean", "obs_normalizer.rms.var", "obs_normalizer.rms.count"}
    buffers = {name for name, _ in policy.named_buffers()}
    if buffers != expected_buffers:
        refuse(f"buffers {sorted(buffers ^ expected_buffers)} ({'unknown' if buffers - expected_buffers else 'missing'})")
    for name, m in policy.named_modules():
        hooks = [h for h in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
                 if getattr(m, h, None)]
        if hooks:
            refuse(f"module hooks on {name or 'the policy'} ({', '.join(hooks)})")


class NumpyMLP:
    """Forward and backward of one ``robo_ppo.modules.actor_critic.mlp`` in numpy.

    ``weights[i] [out, in]`` and ``biases[i] [out]`` are numpy views of the
    torch layers' parameters; ``grad_w[i]``, ``grad_b[i]`` views into the flat
    gradient buffer, where ``backward`` writes.
    """

    def __init__(self, seq: nn.Sequential, activation: str, params_of: dict, grads_of: dict):
        linears = [m for m in seq if isinstance(m, nn.Linear)]
        self.weights = [params_of[id(m.weight)] for m in linears]
        self.biases = [params_of[id(m.bias)] for m in linears]
        self.grad_w = [grads_of[id(m.weight)] for m in linears]
        self.grad_b = [grads_of[id(m.bias)] for m in linears]
        self.act, self.act_grad = ACTIVATIONS[activation]

    def forward(self, x: np.ndarray, cache: Optional[list] = None) -> np.ndarray:
        """``x [B, in] -> [B, out]``. With ``cache`` (a list), keeps each layer's
        (input, pre-activation, output) for ``backward``."""
        for w, b in zip(self.weights[:-1], self.biases[:-1], strict=True):
            pre = x @ w.T + b
            out = self.act(pre)
            if cache is not None:
                cache.append((x, pre, out))
            x = out
        out = x @ self.weights[-1].T + self.biases[-1]  # linear head
        if cache is not None:
            cache.append((x, out, out))
        return out

    def backward(self, grad_out: np.ndarray, cache: list) -> None:
        """Backpropagate ``dL/d(output) [B, out]`` through the cached forward,
        writing ``dL/dW = g.T @ x`` and ``dL/db = sum_B g`` into the gradient views."""
        g = grad_out
        for i in range(len(self.weights) - 1, -1, -1):
            x, pre, out = cache[i]
            if i != len(self.weights) - 1:
                g = g * self.act_grad(pre, out)
            np.matmul(g.T, x, out=self.grad_w[i])
            np.sum(g, axis=0, out=self.grad_b[i])
            if i:
                g = g @ self.weights[i]


class NumpyActorCritic:
    """The CPU compute path of an ``ActorCritic`` (see the module docstring).

    Args:
        policy: the actor-critic, on the CPU. Its parameters are re-seated as
            views into ``flat_params``; its values are unchanged.

    Raises:
        UnsupportedModuleError: the policy has a part this class does not
            mirror exactly (``check_mirrorable``: e.g. an asymmetric critic or
            another layer type); nothing was changed.
        ValueError: the policy is not on the CPU, or its parameters are not
            all float32 (training) or all float64 (``NumpyPPO.check_kernel``'s
            reference; only ``loss_and_grad`` and ``mean_kl`` are meant for it).
    """

    def __init__(self, policy: ActorCritic):
        check_mirrorable(policy)
        params = list(policy.parameters())
        dtypes = {p.dtype for p in params}
        if any(p.device.type != "cpu" for p in params) or dtypes not in ({torch.float32}, {torch.float64}):
            raise ValueError(f"NumpyActorCritic needs a float32 (or, for the gradient check, float64) policy "
                             f"on the CPU (compute=numpy); got {sorted(map(str, dtypes))} on "
                             f"{sorted({p.device.type for p in params})}")
        self.policy = policy
        self.is_discrete = policy.is_discrete
        # one flat buffer for all parameters, their gradients (numpy) and Adam's state
        self.flat_params = torch.cat([p.detach().reshape(-1) for p in params])
        self.dtype = self.flat_params.numpy().dtype
        self.flat_grad = np.zeros(self.flat_params.numel(), dtype=self.dtype)
        params_of, grads_of, offset = {}, {}, 0
        for p in params:
            n = p.numel()
            p.data = self.flat_params[offset:offset + n].view_as(p)
            params_of[id(p)] = p.data.numpy()
            grads_of[id(p)] = self.flat_grad[offset:offset + n].reshape(p.shape)
            offset += n
        self.actor = NumpyMLP(policy.actor, policy.activation, params_of, grads_of)
        self.critic = NumpyMLP(policy.critic, policy.activation, params_of, grads_of)
        if not self.is_discrete:
            self.log_std = params_of[id(policy.log_std)]
            self.grad_log_std = grads_of[id(policy.log_std)]
            self.action_low = policy.action_low.numpy()    # views: the bounds loss's bounds
            self.action_high = policy.action_high.numpy()
        norm = policy.obs_normalizer
        if norm is not None:
            self._rms = (norm.rms.mean.numpy(), norm.rms.var.numpy(), norm.rms.count.numpy())
            self._obs_clip, self._obs_eps = norm.clip, norm.eps
            self._norm_cache: tuple = (None, None, None)

    # ------------------------------------------------------------- rollout
    # numpy arrays in and out: the trainer's rollout loop drives this object and an
    # ArrayVecEnv without any torch call per step.
    def normalize(self, obs: np.ndarray) -> np.ndarray:
        """As ``ActorCritic.normalize``: ``clip((obs - mean) / sqrt(var + eps), +-clip)``
        with the statistics cast to float32 first, as the torch path does. The
        float32 statistics are cached until the count changes (an update)."""
        if self.policy.obs_normalizer is None:
            return obs
        mean, var, count = self._rms
        cached_count, mean32, std32 = self._norm_cache
        if cached_count != float(count):
            mean32, std32 = mean.astype(np.float32), np.sqrt(var + self._obs_eps).astype(np.float32)
            self._norm_cache = (float(count), mean32, std32)
        x = obs - mean32
        x /= std32
        np.maximum(x, -self._obs_clip, out=x)  # = np.clip, without its Python wrapper
        return np.minimum(x, self._obs_clip, out=x)

    def update_normalizer(self, obs: np.ndarray) -> None:
        """Fold raw observations ``[B, obs_dim]`` into the running statistics."""
        self.policy.update_normalizer(torch.from_numpy(obs))

    def get_value(self, norm_obs: np.ndarray) -> np.ndarray:
        """``V(norm_obs) [B]``."""
        return self.critic.forward(norm_obs)[:, 0]

    def act(self, norm_obs: np.ndarray, noise: np.ndarray) -> PolicyOutput:
        """As ``ActorCritic.act`` with pre-drawn ``noise`` (numpy arrays in the
        ``PolicyOutput``): Gaussian ``a = mu + exp(log_std) * noise``,
        ``noise [B, act_dim] ~ N(0, 1)``; Categorical by inverse CDF,
        ``noise [B] ~ U[0, 1)``."""
        params = self.actor.forward(norm_obs)
        values = self.critic.forward(norm_obs)[:, 0]
        if self.is_discrete:
            logp_all = _log_softmax(params)
            cdf = np.cumsum(np.exp(logp_all), axis=-1)
            actions = np.minimum((cdf < noise[:, None]).sum(-1), params.shape[-1] - 1)
            log_probs = np.take_along_axis(logp_all, actions[:, None], -1)[:, 0]
        else:
            actions = params + np.exp(self.log_std) * noise
            # log N(a; mu, sigma) with z = (a - mu) / sigma = noise
            log_probs = (-0.5 * noise * noise - self.log_std).sum(-1) - 0.5 * LOG_2PI * noise.shape[-1]
        return PolicyOutput(actions, log_probs, values, params)

    # -------------------------------------------------------------- update
    def loss_and_grad(self, mb: dict[str, np.ndarray], *, clip_coef: float, vf_clip: Optional[float],
                      vf_coef: float, ent_coef: float, norm_adv: bool, bounds_coef: float = 0.0,
                      kl_beta: Optional[float] = None, diagnostics: bool = True) -> dict[str, float]:
        """One minibatch's PPO loss; its gradient w.r.t. ``flat_params`` goes to ``flat_grad``.

        ``mb`` holds numpy arrays for ``B`` samples: ``obs [B, obs_dim]``
        (normalized), ``actions``, ``log_probs [B]``, ``values [B]``,
        ``advantages [B]``, ``returns [B]``, and for the KL loss
        ``dist_params [B, .]`` and ``old_log_std [act_dim]``.

        loss = ``pg_loss - ent_coef * entropy + vf_coef * value_loss`` with
        ``pg_loss`` the clipped surrogate (PPO eq. 7, ``kl_beta is None``) or
        the KL penalty (PPO eq. 8), as in ``robo_ppo.algo.losses``; with
        ``bounds_coef > 0`` (Gaussian), ``+ bounds_coef * bounds_loss`` of the
        mean beyond the action bounds (``losses.bounds_loss``).

        Returns the loss terms and diagnostics as floats: ``loss``,
        ``policy_loss``, ``value_loss``, ``entropy``, ``approx_kl``,
        ``clipfrac``, ``kl`` (mean exact KL, KL loss only), ``bounds_loss``
        (``bounds_coef > 0`` only). With
        ``diagnostics=False`` only ``kl`` (KL loss) is returned: the update
        reports the last epoch's minibatches only, so the others skip the work.
        """
        obs, n = mb["obs"], len(mb["obs"])
        actor_cache: list = []
        critic_cache: list = []
        params = self.actor.forward(obs, actor_cache)
        values = self.critic.forward(obs, critic_cache)[:, 0]

        # log-probabilities, entropy and their derivatives w.r.t. the head outputs
        if self.is_discrete:
            logp_all = _log_softmax(params)
            probs = np.exp(logp_all)
            actions = mb["actions"].astype(np.int64)
            new_logp = np.take_along_axis(logp_all, actions[:, None], -1)[:, 0]
            ent_each = -(probs * logp_all).sum(-1)
            entropy = ent_each.mean()
        else:
            log_std = self.log_std
            inv_std = np.exp(-log_std)
            z = (mb["actions"] - params) * inv_std
            new_logp = (-0.5 * z * z - log_std - 0.5 * LOG_2PI).sum(-1)
            entropy = float((log_std + ENTROPY_CONST).sum())

        adv = mb["advantages"]
        if norm_adv:
            adv = adv - adv.mean()
            if n > 1:
                adv = adv / (adv.std(ddof=1) + 1e-8)
        log_ratio = new_logp - mb["log_probs"]
        ratio = np.exp(log_ratio)

        # policy loss and dL/d(new_logp)
        kl_mean = None
        if kl_beta is None:
            lo, hi = 1.0 - clip_coef, 1.0 + clip_coef
            unclipped, clipped = -adv * ratio, -adv * np.clip(ratio, lo, hi)
            pg_loss = np.maximum(unclipped, clipped).mean()
            w_unc, w_clip = _max_grad_weights(unclipped, clipped)
            inside = (ratio >= lo) & (ratio <= hi)
            d_ratio = -adv * (w_unc + w_clip * inside) / n
        else:
            kl_each, d_params_kl, d_log_std_kl = self._kl_and_grad(mb, params)
            kl_mean = float(kl_each.mean())
            pg_loss = (-adv * ratio + kl_beta * kl_each).mean()
            d_ratio = -adv / n
        d_logp = d_ratio * ratio

        # value loss and dL/d(values)
        diff = values - mb["returns"]
        if vf_clip is None:
            v_loss = 0.5 * (diff * diff).mean()
            d_values = vf_coef * diff / n
        else:
            delta = values - mb["values"]
            v_clipped = mb["values"] + np.clip(delta, -vf_clip, vf_clip)
            diff_c = v_clipped - mb["returns"]
            sq, sq_c = diff * diff, diff_c * diff_c
            v_loss = 0.5 * np.maximum(sq, sq_c).mean()
            w_sq, w_sq_c = _max_grad_weights(sq, sq_c)
            passes = (delta >= -vf_clip) & (delta <= vf_clip)
            d_values = vf_coef * (w_sq * diff + w_sq_c * diff_c * passes) / n

        # chain rule into the head outputs (and log_std), then through the MLPs
        if self.is_discrete:
            onehot = np.zeros_like(params)
            np.put_along_axis(onehot, actions[:, None], 1.0, -1)
            d_params = d_logp[:, None] * (onehot - probs)
            # dH/dz_j = -p_j (log p_j + H), per sample; the loss has -ent_coef * mean(H)
            d_params -= (ent_coef / n) * (-probs * (logp_all + ent_each[:, None]))
        else:
            # d logp / d mu = z / sigma;  d logp / d log_std = z^2 - 1;  d H / d log_std = 1
            d_params = d_logp[:, None] * z * inv_std
            self.grad_log_std[...] = (d_logp[:, None] * (z * z - 1.0)).sum(0) - ent_coef
        if kl_beta is not None:
            d_params = d_params + (kl_beta / n) * d_params_kl
            if not self.is_discrete:
                self.grad_log_std += (kl_beta / n) * d_log_std_kl
        b_loss = None
        if bounds_coef > 0 and not self.is_discrete:
            # d/d mu of mean_b sum_j (relu(mu - hi)^2 + relu(lo - mu)^2) = 2 (relu(mu - hi) - relu(lo - mu)) / n
            above = np.maximum(params - self.action_high, 0.0)
            below = np.maximum(self.action_low - params, 0.0)
            b_loss = float((above * above + below * below).sum(-1).mean())
            d_params = d_params + (2.0 * bounds_coef / n) * (above - below)
        self.actor.backward(d_params.astype(self.dtype, copy=False), actor_cache)
        self.critic.backward(d_values[:, None].astype(self.dtype, copy=False), critic_cache)

        out = {} if kl_mean is None else {"kl": kl_mean}
        if not diagnostics:
            return out
        loss = pg_loss - ent_coef * entropy + vf_coef * v_loss
        if b_loss is not None:
            loss += bounds_coef * b_loss
            out["bounds_loss"] = b_loss
        out |= {"loss": float(loss), "policy_loss": float(pg_loss), "value_loss": float(v_loss),
               "entropy": float(entropy),
               "approx_kl": float(((ratio - 1.0) - log_ratio).mean()),
               "clipfrac": float((np.abs(ratio - 1.0) > clip_coef).mean())}
        return out

    def mean_kl(self, norm_obs: np.ndarray, old_params: np.ndarray, old_log_std: Optional[np.ndarray]) -> float:
        """Exact mean KL(old || current policy) over ``norm_obs [B, obs_dim]``, given the
        old head outputs ``[B, .]`` and log-std ``[act_dim]`` (Gaussian; None otherwise)."""
        mb = {"dist_params": old_params, "old_log_std": old_log_std}
        return float(self._kl_and_grad(mb, self.actor.forward(norm_obs), with_grad=False)[0].mean())

    def _kl_and_grad(self, mb, params, with_grad: bool = True):
        """Exact KL(old || new) per sample ``[B]`` (as ``ActorCritic.kl_from``) and
        its derivatives w.r.t. the new head outputs ``[B, .]`` and the new
        log_std summed over the batch ``[act_dim]`` (Gaussian; None otherwise;
        both None without ``with_grad``)."""
        old = mb["dist_params"]
        if self.is_discrete:
            old_logp, new_logp = _log_softmax(old), _log_softmax(params)
            old_p = np.exp(old_logp)
            kl = (old_p * (old_logp - new_logp)).sum(-1)
            # d/dz sum_j p_old,j (log p_old,j - log softmax(z)_j) = softmax(z) - p_old
            return (kl, np.exp(new_logp) - old_p, None) if with_grad else (kl, None, None)
        new_ls, old_ls = self.log_std, mb["old_log_std"]
        var_ratio = np.exp(2.0 * (old_ls - new_ls))
        inv_var = np.exp(-2.0 * new_ls)
        diff = old - params
        mean_term = diff * diff * inv_var
        kl = 0.5 * (var_ratio + mean_term - 1.0 - 2.0 * (old_ls - new_ls)).sum(-1)
        if not with_grad:
            return kl, None, None
        # d/d mu_new = (mu_new - mu_old) / sigma_new^2;  d/d log_std_new = 1 - var_ratio - mean_term
        return kl, -diff * inv_var, (1.0 - var_ratio - mean_term).sum(0)


def _log_softmax(z: np.ndarray) -> np.ndarray:
    shifted = z - z.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
