"""Running statistics and the observation normalizer that lives inside the policy."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def merge_moments(
    mean: torch.Tensor,
    var: torch.Tensor,
    count: torch.Tensor,
    batch_mean: torch.Tensor,
    batch_var: torch.Tensor,
    batch_count: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Merge two sets of (mean, population variance, count) into one.

    Parallel variance algorithm of Chan, Golub & LeVeque (1979):
    ``delta = mb - ma``, ``n = na + nb``,
    ``mean = ma + delta * nb / n``,
    ``M2 = va * na + vb * nb + delta**2 * na * nb / n``, ``var = M2 / n``.

    Shapes: ``mean, var, batch_mean, batch_var: [D]``; counts are scalars.
    The result equals the statistics of the concatenated data exactly (up to
    float64 rounding).
    """
    total = count + batch_count
    delta = batch_mean - mean
    new_mean = mean + delta * (batch_count / total)
    m2 = var * count + batch_var * batch_count + delta.square() * (count * batch_count / total)
    return new_mean, m2 / total, total


_NUMPY_FLOATS = (torch.float32, torch.float64)


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

        On CPU the merge runs as numpy operations on the buffers' own memory:
        the same float64 arithmetic as ``merge_moments``, bit for bit, at a
        fraction of torch's per-op cost (the 1-env rollout calls this twice per
        step). A one-sample batch skips the reductions (mean = the sample,
        variance 0); larger batches reduce with torch as before.
        """
        x = x.detach()
        buffers = self._buffers
        if x.device.type == "cpu" and buffers["mean"].device.type == "cpu" and x.dtype in _NUMPY_FLOATS:
            views = self.__dict__.get("_np_views")
            if views is None or views[0] is not buffers["mean"] or views[1] is not buffers["var"] \
                    or views[2] is not buffers["count"]:
                views = (buffers["mean"], buffers["var"], buffers["count"],
                         buffers["mean"].numpy(), buffers["var"].numpy(), buffers["count"].numpy())
                self.__dict__["_np_views"] = views
            mean, var, count = views[3:]
            xs = x.numpy().astype(np.float64, copy=False).reshape(-1, *mean.shape)
            n = xs.shape[0]
            if n == 1:
                batch_mean, batch_var = xs[0], None
            else:
                xt = torch.from_numpy(xs)
                batch_mean = xt.mean(dim=0).numpy()
                batch_var = xt.var(dim=0, unbiased=False).numpy()
            c = float(count)
            total = c + n
            delta = batch_mean - mean
            new_mean = mean + delta * (n / total)
            m2 = var * c
            if batch_var is not None:
                m2 = m2 + batch_var * n
            m2 = m2 + np.square(delta) * (c * n / total)
            mean[...] = new_mean
            var[...] = m2 / total
            count[...] = total
            return
        with torch.no_grad():
            x = x.to(torch.float64).reshape(-1, *self.mean.shape)
            batch_mean = x.mean(dim=0)
            batch_var = x.var(dim=0, unbiased=False)
            mean, var, count = merge_moments(
                self.mean, self.var, self.count, batch_mean, batch_var, float(x.shape[0])
            )
            self.mean.copy_(mean)
            self.var.copy_(var)
            self.count.copy_(count)


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
        self.returns.mul_(self.gamma).add_(rewards.to(torch.float64))
        self.rms.update(self.returns)
        self.returns.masked_fill_(dones.to(self.returns.device), 0.0)
        scaled = rewards / torch.sqrt(self.rms.var + self.eps).to(rewards.dtype)
        return torch.clamp(scaled, -self.clip, self.clip)
