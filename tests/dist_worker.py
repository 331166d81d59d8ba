"""One rank of the data-parallel tests (tests/test_distributed.py), run by torchrun:

    torchrun --nproc_per_node=2 tests/dist_worker.py OUT_DIR OVERRIDE...

Trains a few iterations with the real Trainer and DistContext (gloo), and
writes what the test compares into ``OUT_DIR/rank<r>.pt`` (the test harness
writes these files, not the trainer): the flat parameters, the normalizer
statistics and every batch of raw observations this rank folded into them,
plus a reward-scaler equivalence check.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import make_cfg  # noqa: E402

from robo_ppo.modules.normalizer import RewardScaler  # noqa: E402
from robo_ppo.runner.distributed import init_distributed, shutdown_distributed  # noqa: E402
from robo_ppo.runner.trainer import Trainer  # noqa: E402


def reward_scaler_check(dist) -> float:
    """Max |difference| between the scaled rewards of this rank's envs under a
    synced scaler and those of one scaler over all ranks' envs together."""
    num_envs, steps, world = 3, 40, dist.world_size
    g = torch.Generator().manual_seed(0)
    rewards = torch.randn(2, steps, num_envs * world, generator=g)
    dones = torch.rand(2, steps, num_envs * world, generator=g) < 0.05
    mine = slice(dist.rank * num_envs, (dist.rank + 1) * num_envs)
    synced, single = RewardScaler(num_envs, 0.99), RewardScaler(num_envs * world, 0.99)
    synced.step_sums_sync = dist.sum_across_ranks
    worst = 0.0
    for k in range(2):  # two rollouts: the second starts from merged statistics
        a = synced.scale_rollout(rewards[k][:, mine].contiguous(), dones[k][:, mine].contiguous())
        b = single.scale_rollout(rewards[k], dones[k])[:, mine]
        worst = max(worst, float((a - b).abs().max()))
    assert float(synced.rms.count) == float(single.rms.count)
    return worst


def main() -> None:
    out_dir, overrides = Path(sys.argv[1]), sys.argv[2:]
    dist = init_distributed("cpu")
    cfg = make_cfg(*overrides)
    trainer = Trainer(cfg, out_dir / "run", dist=dist)
    seen: list[torch.Tensor] = []
    rms = trainer.policy.obs_normalizer.rms
    update = rms.update

    def recording_update(x):
        seen.append(x.detach().double().reshape(-1, x.shape[-1]).clone())
        update(x)

    rms.update = recording_update
    # the fresh trainer already folded in the reset obs and one warm-up rollout: record from here,
    # and keep the statistics they gave, so the test can reconstruct the whole stream
    start = {"mean": rms.mean.clone(), "var": rms.var.clone(), "count": rms.count.clone()}
    summary = trainer.train()
    trainer.close()
    flat = torch.cat([p.detach().reshape(-1) for p in trainer.policy.parameters()])
    result = {"flat_params": flat, "start": start, "seen": seen,
              "final": {"mean": rms.mean.clone(), "var": rms.var.clone(), "count": rms.count.clone()},
              "reward_scaler": None if trainer.reward_scaler is None else
              {k: v.clone() for k, v in trainer.reward_scaler.rms.state_dict().items()},
              "iterations": summary["iterations"], "global_step": summary["global_step"],
              "compute": trainer.compute, "reward_scaler_max_diff": reward_scaler_check(dist)}
    torch.save(result, out_dir / f"rank{dist.rank}.pt")
    shutdown_distributed()


if __name__ == "__main__":
    main()
