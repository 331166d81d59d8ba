"""Sim2sim check: drive an exported policy through plain MuJoCo (gymnasium), report the return.

Uses only the deployment kit (``onnx_controller.py``: numpy + onnxruntime),
gymnasium and mujoco; no torch, no robo_ppo. If the returns here match
``robo-ppo-replay`` on the same file, the controller, the observation layout
and the action convention are what the robot code will see.

    python sim2sim.py policy.onnx                      # 3 episodes on the policy's task
    python sim2sim.py policy.onnx --episodes 10 --seed 100
    python sim2sim.py policy.onnx --env-id Hopper-v5   # must match the policy's metadata

Needs ``pip install numpy onnxruntime "gymnasium[mujoco]"``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from onnx_controller import ControllerError, OnnxController  # noqa: E402


def run(policy: str | Path, episodes: int = 3, seed: int = 0, env_id: str | None = None,
        max_episode_steps: int | None = None) -> dict:
    """Run ``episodes`` episodes (episode i reset with ``seed + i``); returns
    ``{"returns", "lengths", "task_id", "mean_step_us"}``.

    Raises:
        FileNotFoundError: no such file.
        ControllerError: the file is not a (gymnasium task's) robo_ppo policy (``MetadataError``: not
            ONNX, damaged, metadata not JSON or of the wrong type), gymnasium cannot make its task, or
            it does not fit the task (id, obs_dim, act_dim); one line.
    """
    import gymnasium as gym

    ctrl = OnnxController(policy, expect={"task_id": env_id} if env_id else None)
    name = Path(policy).name
    if ctrl.metadata.get("robot") is not None:
        raise ControllerError(f"{name} is a robot policy (it has 'robot' metadata); sim2sim runs gymnasium "
                              "tasks: run it with deploy.py")
    task_id = ctrl.task_id
    env_cfg = ctrl.metadata.get("env_config") or {}
    limit = max_episode_steps if max_episode_steps is not None else env_cfg.get("max_episode_steps")
    kwargs = env_cfg.get("kwargs") or {}
    if not isinstance(kwargs, dict) or not (limit is None or isinstance(limit, int)):
        raise ControllerError(f"{name}: metadata env_config has kwargs {str(kwargs)[:60]} and max_episode_steps "
                              f"{str(limit)[:20]}; expected an object and an integer: re-export the policy")
    kwargs = dict(kwargs)
    if limit is not None:
        kwargs["max_episode_steps"] = int(limit)
    try:
        env = gym.make(task_id, **kwargs)
    except (gym.error.Error, ImportError, TypeError, ValueError) as e:
        raise ControllerError(f"{name}: gymnasium cannot make its task {task_id!r} ({type(e).__name__}: "
                              f"{(str(e).splitlines() or [''])[0][:160]})") from None
    if isinstance(env.action_space, gym.spaces.Discrete):
        env_act, discrete = int(env.action_space.n), True
    else:
        env_act, discrete = int(env.action_space.shape[0]), False
    if env.observation_space.shape != (ctrl.obs_dim,) or env_act != ctrl.act_dim or discrete != ctrl.discrete:
        raise ControllerError(f"{Path(policy).name} (obs_dim {ctrl.obs_dim}, act_dim {ctrl.act_dim}) does not fit "
                              f"{task_id} (obs {env.observation_space.shape}, act {env_act})")
    returns, lengths, step_s = [], [], []
    try:
        for i in range(episodes):
            obs, _ = env.reset(seed=seed + i)
            ret, length, done = 0.0, 0, False
            while not done:
                t0 = time.perf_counter()
                action = ctrl(obs)  # float64 MuJoCo observation -> float32 inside
                step_s.append(time.perf_counter() - t0)
                if not discrete:
                    action = action.astype(np.float64)
                obs, reward, terminated, truncated, _ = env.step(action)
                ret += float(reward)
                length += 1
                done = terminated or truncated
            returns.append(ret)
            lengths.append(length)
    finally:
        env.close()
    return {"returns": returns, "lengths": lengths, "task_id": task_id,
            "mean_step_us": 1e6 * float(np.mean(step_s))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("policy", help="policy.onnx written by robo-ppo-export")
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0, help="episode i is reset with seed + i")
    parser.add_argument("--env-id", default=None, help="gymnasium task (default: the policy's own)")
    parser.add_argument("--max-episode-steps", type=int, default=None)
    args = parser.parse_args(argv)
    try:
        result = run(args.policy, args.episodes, args.seed, args.env_id, args.max_episode_steps)
    except (ControllerError, FileNotFoundError) as e:
        print(f"sim2sim error: {e}", file=sys.stderr)
        return 2
    print(f"{result['task_id']}: {len(result['returns'])} episodes, controller "
          f"{result['mean_step_us']:.0f} us/step")
    for i, (r, n) in enumerate(zip(result["returns"], result["lengths"], strict=True)):
        print(f"  episode {i} (seed {args.seed + i}): return {r:.2f}, length {n}")
    r = np.asarray(result["returns"])
    print(f"return {r.mean():.2f} ± {r.std():.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
