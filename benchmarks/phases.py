"""robo_ppo vs Stable-Baselines3, phase by phase, in one process (load-robust).

    python -m benchmarks.phases [--repeats 4]

Builds robo_ppo with ``preset=cleanrl`` and SB3 PPO with the same settings
(see ``benchmarks/measure.py:sb3_train``) on HalfCheetah-v5, then alternates
one rollout (2048 steps) and one update of each, timing CPU seconds of this
process (one torch thread, so CPU time excludes what other processes take).
Prints the best time of each phase after the first repeat and the ratio.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=4)
    args = p.parse_args(argv)

    import gymnasium as gym
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from benchmarks.measure import BENCH_OVERRIDES, compose_config
    from robo_ppo.runner.trainer import Trainer

    torch.set_num_threads(1)
    trainer = Trainer(compose_config(["env=halfcheetah", "preset=cleanrl", *BENCH_OVERRIDES]),
                      tempfile.mkdtemp(prefix="robo_ppo_phases_"))
    venv = VecNormalize(DummyVecEnv([lambda: gym.make("HalfCheetah-v5")]), clip_obs=5.0, clip_reward=10.0,
                        gamma=0.99)
    model = PPO("MlpPolicy", venv, n_steps=2048, batch_size=64, n_epochs=10, learning_rate=3e-4,
                clip_range_vf=0.2, device="cpu", verbose=0,
                policy_kwargs=dict(net_arch=dict(pi=[64, 64], vf=[64, 64]), activation_fn=torch.nn.Tanh))

    class Nop(BaseCallback):
        def _on_step(self) -> bool:
            return True

    callback = Nop()
    callback.init_callback(model)
    model._setup_learn(10**8, callback)
    times: dict[str, list[float]] = {"robo_ppo rollout": [], "robo_ppo update": [],
                                     "sb3 rollout": [], "sb3 update": []}

    def clock(key, fn):
        t0 = time.process_time()
        fn()
        times[key].append(time.process_time() - t0)

    def robo_rollout():
        trainer.iteration += 1
        trainer.ppo.begin_iteration(trainer.iteration)
        trainer._collect_rollout()

    for _ in range(args.repeats):
        clock("robo_ppo rollout", robo_rollout)
        clock("robo_ppo update", trainer._update)
        clock("sb3 rollout", lambda: model.collect_rollouts(model.env, callback, model.rollout_buffer,
                                                             n_rollout_steps=2048))
        clock("sb3 update", model.train)
    best = {k: min(v[1:] or v) for k, v in times.items()}
    for k, v in times.items():
        print(f"{k:17s} best {best[k]:.3f} CPU s   all {[round(x, 3) for x in v]}")
    ours = best["robo_ppo rollout"] + best["robo_ppo update"]
    sb3 = best["sb3 rollout"] + best["sb3 update"]
    print(f"iteration (2048 steps): robo_ppo {ours:.3f} s = {2048 / ours:.0f} steps per CPU-second, "
          f"SB3 {sb3:.3f} s = {2048 / sb3:.0f}; robo_ppo / SB3 speed = {sb3 / ours:.2f}x")
    trainer.close()
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.exit(main())
