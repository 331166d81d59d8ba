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
    """

    def __init__(self, shape: tuple[int, ...] = ()):
        super().__init__()
        self.register_buffer("mean", torch.zeros(shape, dtype=torch.float64))
        self.register_buffer("var", torch.ones(shape, dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))

    def update(self, x: torch.Tensor) -> None:
        """Fold a batch ``x: [B, *shape]`` into the statistics (B >= 1).

        On CPU the merge runs in numpy on the buffers' own memory: the same
        float64 arithmetic at a fraction of torch's per-op cost (a 1-env
        rollout calls this twice per step).
        """
        if x.device.type == "cpu" and self.mean.device.type == "cpu":
            xs = (x.detach() if x.requires_grad else x).numpy().reshape(-1, *self.mean.shape)
            mean, var, count = self.mean.numpy(), self.var.numpy(), self.count.numpy()
            if len(xs) == 1:  # one env: no reductions (a single sample has variance 0)
                batch_mean, batch_var = xs[0].astype(np.float64), 0.0
            else:
                xs = xs.astype(np.float64, copy=False)
                batch_mean, batch_var = xs.mean(axis=0), xs.var(axis=0)
            new = merge_moments(mean, var, float(count), batch_mean, batch_var, float(len(xs)))
            mean[...], var[...], count[...] = new
            return
        with torch.no_grad():
            x = x.to(torch.float64).reshape(-1, *self.mean.shape)
            new = merge_moments(self.mean, self.var, self.count, x.mean(dim=0),
                                x.var(dim=0, unbiased=False), float(x.shape[0]))
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

    Baselines' VecNormalize reward scaling: per env ``R <- gamma * R + r``
    (reset to 0 when the episode ends), statistics of ``R`` are updated every
    step and the reward is returned as ``clip(r / sqrt(var(R) + eps), +-clip)``.
    Shapes: ``rewards, dones: [N]``.
    """

    def __init__(self, num_envs: int, gamma: float, clip: float = 10.0, eps: float = 1e-8):
        super().__init__()
        self.rms = RunningMeanStd(())
        self.register_buffer("returns", torch.zeros(num_envs, dtype=torch.float64))
        self.gamma = float(gamma)
        self.clip = float(clip)
        self.eps = float(eps)

    @torch.no_grad()
    def forward(self, rewards: torch.Tensor, dones: torch.Tensor) -> torch.Tensor:
        if rewards.device.type == "cpu" and self.returns.device.type == "cpu":
            # the same arithmetic in numpy on the buffers' memory: called every env step
            returns, r = self.returns.numpy(), rewards.numpy()
            returns *= self.gamma
            returns += r
            self.rms.update(self.returns)
            returns[dones.numpy()] = 0.0
            std = np.float32(np.sqrt(self.rms.var.numpy() + self.eps))
            return torch.from_numpy(np.clip(r / std, -self.clip, self.clip))
        self.returns.mul_(self.gamma).add_(rewards.to(torch.float64))
        self.rms.update(self.returns)
        self.returns.masked_fill_(dones.to(self.returns.device), 0.0)
        scaled = rewards / torch.sqrt(self.rms.var + self.eps).to(rewards.dtype)
        return torch.clamp(scaled, -self.clip, self.clip)
