"""One rank of the data-parallel tests (tests/test_distributed.py), run by torchrun:

    torchrun --nproc_per_node=2 tests/dist_worker.py OUT_DIR OVERRIDE...
    torchrun --nproc_per_node=2 tests/dist_worker.py OUT_DIR --cli OVERRIDE...

Trains a few iterations with the real Trainer and DistContext (gloo), and
writes what the test compares into ``OUT_DIR/rank<r>.pt`` (the test harness
writes these files, not the trainer): the flat parameters, the statistics of
every observation normalizer (the actor's, and an asymmetric critic's) and
every batch of raw observations this rank folded into them, each rank's first
observations, the torch threads of its updates and its engine threads, plus
(first form) a reward-scaler equivalence check.

``--cli``: the whole ``robo-ppo-train`` command (``robo_ppo.train.main``:
Hydra, rank 1's no-files overrides, export on rank 0) with the trainer
instrumented; the rank file is written when training returns, before the export.
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


class Recorder:
    """Records what a trainer's normalizers see from the moment it is attached
    (after the trainer's start-up: reset observations and warm-up rollout folded in)."""

    def __init__(self) -> None:
        self.update_threads: list[int] = []

    def attach(self, trainer: Trainer) -> None:
        self.trainer = trainer
        self.norms = {}
        for name in ("obs_normalizer", "critic_obs_normalizer"):
            norm = getattr(trainer.policy, name, None)
            if norm is not None:
                self.norms[name] = (norm.rms, self._record(norm.rms, []))
        critic = trainer.next_critic_obs
        self.first = {"obs": trainer.next_obs.detach().clone(),
                      "critic_obs": None if critic is None else critic.detach().clone()}

    @staticmethod
    def _record(rms, seen: list):
        update = rms.update
        start = {"mean": rms.mean.clone(), "var": rms.var.clone(), "count": rms.count.clone()}

        def recording_update(x):
            seen.append(x.detach().double().reshape(-1, x.shape[-1]).clone())
            update(x)

        rms.update = recording_update
        return start, seen

    def result(self, summary: dict) -> dict:
        t = self.trainer
        flat = torch.cat([p.detach().reshape(-1) for p in t.policy.parameters()])
        norms = {name: {"start": start, "seen": seen,
                        "final": {"mean": rms.mean.clone(), "var": rms.var.clone(), "count": rms.count.clone()}}
                 for name, (rms, (start, seen)) in self.norms.items()}
        physics = getattr(t.envs, "physics", None)
        out = {"flat_params": flat, "norms": norms, "first": self.first,
               "reward_scaler": None if t.reward_scaler is None else
               {k: v.clone() for k, v in t.reward_scaler.rms.state_dict().items()},
               "iterations": summary["iterations"], "global_step": summary["global_step"],
               "compute": t.compute, "update_threads": self.update_threads,
               "engine_threads": None if physics is None else len(getattr(physics, "_chunks", ())) or None}
        # the single-normalizer view the older tests read
        if "obs_normalizer" in norms:
            out.update({k: norms["obs_normalizer"][k] for k in ("start", "seen", "final")})
        return out


def record_update_threads(recorder: Recorder) -> None:
    """Record torch's thread count inside every PPO update (class-level, so it is
    what the update runs with, after any wrapper the trainer puts around it)."""
    from robo_ppo.algo.numpy_ppo import NumpyPPO
    from robo_ppo.algo.ppo import PPO

    for cls in (PPO, NumpyPPO):
        update = cls.update

        def threads_update(self, batch, _update=update):
            recorder.update_threads.append(torch.get_num_threads())
            return _update(self, batch)

        cls.update = threads_update


def main_cli(out_dir: Path, overrides: list[str]) -> None:
    """The real ``robo-ppo-train`` under torchrun, its trainer instrumented."""
    import robo_ppo.train
    from robo_ppo.runner.distributed import env_rank

    recorder = Recorder()
    record_update_threads(recorder)
    train = Trainer.train

    def recorded_train(self, *args, **kwargs):
        recorder.attach(self)
        summary = train(self, *args, **kwargs)
        torch.save(recorder.result(summary), out_dir / f"rank{env_rank()}.pt")
        return summary

    Trainer.train = recorded_train
    sys.argv = [sys.argv[0], *overrides]
    robo_ppo.train.main()


def main() -> None:
    out_dir, overrides = Path(sys.argv[1]).resolve(), sys.argv[2:]
    if overrides[:1] == ["--cli"]:
        main_cli(out_dir, overrides[1:])
        return
    dist = init_distributed("cpu")
    cfg = make_cfg(*overrides)
    recorder = Recorder()
    record_update_threads(recorder)
    trainer = Trainer(cfg, out_dir / "run", dist=dist)
    # the fresh trainer already folded in the reset obs and one warm-up rollout: record from here,
    # and keep the statistics they gave, so the test can reconstruct the whole stream
    recorder.attach(trainer)
    summary = trainer.train()
    trainer.close()
    result = recorder.result(summary)
    result["reward_scaler_max_diff"] = reward_scaler_check(dist)
    torch.save(result, out_dir / f"rank{dist.rank}.pt")
    shutdown_distributed()


if __name__ == "__main__":
    main()
