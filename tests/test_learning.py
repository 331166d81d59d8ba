"""Learning tests: the shipped presets must actually learn (real MuJoCo / classic control).

Each run evaluates deterministically (10 episodes, frozen normalizer) every few
iterations and stops as soon as the target is met; the assertion is that the
target is met within the task's step budget.
"""

import pytest

from robo_ppo.runner.trainer import Trainer


def _train_until(cfg, run_dir, target):
    reached = {}

    def check(tr):
        ev = tr.last_eval
        if ev is not None and tr.iteration % tr.cfg.eval_interval == 0 and ev["mean"] >= target:
            reached.update(step=tr.global_step, ret=ev["mean"])
            tr.request_stop()

    tr = Trainer(cfg, run_dir)
    tr.train(on_iteration=check)
    tr.close()
    return reached, tr.last_eval


@pytest.mark.parametrize("task,target,budget,compute", [
    ("inverted_pendulum", 950.0, 100_000, "numpy"),
    ("inverted_pendulum", 950.0, 100_000, "torch"),
    ("cartpole", 475.0, 100_000, "numpy"),
    ("cartpole", 475.0, 100_000, "torch"),
])
def test_preset_reaches_target_return(tmp_path, cfg_factory, task, target, budget, compute):
    cfg = cfg_factory(f"env={task}", f"total_timesteps={budget}", "seed=1", f"compute={compute}")
    reached, last = _train_until(cfg, tmp_path, target)
    assert reached, f"{task}: last deterministic eval {last} never reached {target} in {budget} steps"
    assert reached["step"] <= budget
    print(f"{task}: eval return {reached['ret']:.1f} at {reached['step']} steps")
