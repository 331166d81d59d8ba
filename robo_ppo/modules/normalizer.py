"""Running statistics and the observation normalizer that lives inside the policy."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def merge_moments(mean, var, count, batch_mean, batch_var, batch_count):
    """Merge two sets of (mean, population variance, count) into one.

    Parallel variance algorithm of Chan, Golub & LeVeque (1979):
    ``delta = mb - ma``, ``n = na + nb``,
    ``mean = ma + delta * nb / n``,
    ``M2 = va * na + vb * nb + delta**2 * na * nb / n``, ``var = M2 / n``.

    Shapes: ``mean, var, batch_mean, batch_var: [D]`` (torch tensors or numpy
    arrays alike); counts are scalars.
    The result equals the statistics of the concatenated data exactly (up to
    float64 rounding).
    """
    total = count + batch_count
    delta = batch_mean - mean
    new_mean = mean + delta * (batch_count / total)
    m2 = var * count + batch_var * batch_count + delta * delta * (count * batch_count / total)
    return new_mean, m2 / total, total


class RunningMeanStd(nn.Module):
    """Running mean and population variance of a stream of batches, in float64.

    Buffers (saved in ``state_dict``): ``mean [*shape]``, ``var [*shape]``,
    ``count []``. Starts at count 0 (mean 0, var 1) so that the first update
    adopts the batch's statistics exactly.

    ``batch_sync`` (default ``None``): a data-parallel run sets it to
    ``DistContext.merge_moments_across_ranks``, which turns one rank's batch
    moments into those of every rank's batch together before they are folded in.
    """

    def __init__(self, shape: tuple[int, ...] = ()):
        super().__init__()
        self.register_buffer("mean", torch.zeros(shape, dtype=torch.float64))
        self.register_buffer("var", torch.ones(shape, dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.batch_sync = None

    def update(self, x: torch.Tensor) -> None:
        """Fold a batch ``x: [B, *shape]`` into the statistics (B >= 1).

        On CPU the merge runs in numpy on the buffers' own memory: the same
        float64 arithmetic at a fraction of torch's per-op cost.
        """
        if x.device.type == "cpu" and self.mean.device.type == "cpu":
            xs = x.detach().numpy().reshape(-1, *self.mean.shape).astype(np.float64, copy=False)
            batch = xs.mean(axis=0), xs.var(axis=0), float(len(xs))
            if self.batch_sync is not None:
                batch = self.batch_sync(*batch)
            mean, var, count = self.mean.numpy(), self.var.numpy(), self.count.numpy()
            mean[...], var[...], count[...] = merge_moments(mean, var, float(count), *batch)
            return
        with torch.no_grad():
            x = x.to(torch.float64).reshape(-1, *self.mean.shape)
            batch = x.mean(dim=0), x.var(dim=0, unbiased=False), float(x.shape[0])
            if self.batch_sync is not None:
                batch = self.batch_sync(*batch)
            new = merge_moments(self.mean, self.var, self.count, *batch)
            for buf, value in zip((self.mean, self.var, self.count), new, strict=True):
                buf.copy_(value)


class ObsNormalizer(nn.Module):
    """``clip((obs - mean) / sqrt(var + eps), -clip, clip)`` with running statistics.

    OpenAI Baselines' observation normalization (VecNormalize, clip 5). The
    statistics are updated only when ``update()`` is called by the training
    loop on rollout observations; ``forward`` never changes them, so
    evaluation and the exported ONNX graph see frozen statistics.

    Input ``obs: float32 [B, obs_dim]``; output the same shape and dtype.
    """

    def __init__(self, obs_dim: int, clip: float = 5.0, eps: float = 1e-8):
        super().__init__()
        if clip <= 0:
            raise ValueError(f"obs_clip must be > 0, got {clip}")
        self.rms = RunningMeanStd((obs_dim,))
        self.clip = float(clip)
        self.eps = float(eps)

    def update(self, obs: torch.Tensor) -> None:
        self.rms.update(obs)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        mean = self.rms.mean.to(obs.dtype)
        std = torch.sqrt(self.rms.var + self.eps).to(obs.dtype)
        return torch.clamp((obs - mean) / std, -self.clip, self.clip)


class RewardScaler(nn.Module):
    """Divide rewards by the running std of the discounted return.

    Baselines' VecNormalize reward scaling, per env and step ``t``:
    ``R <- gamma * R + r_t``; fold ``R`` into the running statistics; return
    ``clip(r_t / sqrt(var(R) + eps), +-clip)``; reset ``R`` to 0 when the
    episode ended at ``t``.

    ``scale_rollout`` applies this to a whole rollout at once, after it was
    collected, with the same result as calling it step by step (up to float64
    rounding): the recursion for ``R`` runs over time, and the statistics each
    step's reward is divided by, i.e. of every ``R`` up to and including that
    step, come from cumulative sums (shifted by the previous mean for
    precision). Nothing in the rollout depends on the scaled rewards, so this
    leaves the per-step loop free of the work. Works on CPU (numpy views) and
    accelerator tensors alike (only operators and methods both libraries share).

    ``step_sums_sync`` (default ``None``): a data-parallel run sets it to
    ``DistContext.sum_across_ranks``, which sums the per-step sums ``[2, T]``
    over the ranks, so the statistics are those of all ranks' envs together.
    """

    def __init__(self, num_envs: int, gamma: float, clip: float = 10.0, eps: float = 1e-8):
        super().__init__()
        self.rms = RunningMeanStd(())
        self.register_buffer("returns", torch.zeros(num_envs, dtype=torch.float64))
        self.gamma = float(gamma)
        self.clip = float(clip)
        self.eps = float(eps)
        self.step_sums_sync = None

    @torch.no_grad()
    def scale_rollout(self, rewards: torch.Tensor, dones: torch.Tensor) -> torch.Tensor:
        """Scale a rollout's rewards. ``rewards [T, N]`` float32 (raw),
        ``dones [T, N]`` bool (episode ended at that step); returns ``[T, N]``
        float32 and advances ``returns`` and the statistics past the rollout."""
        on_cpu = rewards.device.type == "cpu"
        # numpy views on the CPU (one torch op costs ~10 numpy ops here), tensors elsewhere
        r = rewards.numpy() if on_cpu else rewards
        keep = 1.0 - (dones.numpy() if on_cpu else dones.to(torch.float64))
        R = self.returns.numpy().copy() if on_cpu else self.returns.clone()
        disc = (np.empty(r.shape, np.float64) if on_cpu
                else torch.empty(r.shape, dtype=torch.float64, device=r.device))
        for t in range(r.shape[0]):
            R = R * self.gamma + r[t]
            disc[t] = R
            R = R * keep[t]
        # statistics after each step: the previous ones merged with all R up to t
        mean0, var0, count0 = float(self.rms.mean), float(self.rms.var), float(self.rms.count)
        sums = ((disc - mean0).sum(1), ((disc - mean0) ** 2).sum(1))
        sums = np.stack(sums) if on_cpu else torch.stack(sums)  # [2, T]: per-step sum, sum of squares
        num_envs = r.shape[1]
        if self.step_sums_sync is not None:
            sums, num_envs = self.step_sums_sync(sums, num_envs)
        n = count0 + num_envs * (np.arange(1, r.shape[0] + 1) if on_cpu
                                 else torch.arange(1, r.shape[0] + 1, device=r.device))
        s1, s2 = sums[0].cumsum(0), sums[1].cumsum(0)
        var = (var0 * count0 + s2 - s1 * s1 / n) / n
        scaled = (r / ((var + self.eps) ** 0.5)[:, None]).clip(-self.clip, self.clip)
        # advance the state to the end of the rollout
        self.returns.copy_(torch.from_numpy(R) if on_cpu else R)
        self.rms.mean.fill_(mean0 + float(s1[-1]) / float(n[-1]))
        self.rms.var.fill_(float(var[-1]))
        self.rms.count.fill_(float(n[-1]))
        return torch.from_numpy(scaled.astype(np.float32)) if on_cpu else scaled.float()
