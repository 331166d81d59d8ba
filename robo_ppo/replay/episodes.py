"""Replay of a gymnasium-style task policy: episodes one after another in one gymnasium env (seed
``seed + i`` for episode ``i``), the first ones filmed, and the table of returns and lengths."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from robo_ppo.replay.policy import LoadedPolicy, check_compatible
from robo_ppo.replay.video import FrameRenderer, _video_path, _VideoWriter


def _replay_episodes(loaded: LoadedPolicy, *, episodes: int, seed: int, env_id: str | None,
                     max_episode_steps: int | None, video: bool, video_path: str | Path | None,
                     video_episodes: int, print_table: bool) -> dict[str, Any]:
    from robo_ppo.envs import make_vec_env

    task_id = env_id or loaded.task["id"]
    limit = max_episode_steps if max_episode_steps is not None else loaded.task["max_episode_steps"]
    env_cfg = OmegaConf.create({"id": task_id, "max_episode_steps": limit,
                                "kwargs": dict(loaded.task["kwargs"]) if task_id == loaded.task["id"] else {}})
    env = make_vec_env(env_cfg, OmegaConf.create({"name": "gymnasium"}), 1, device="cpu",
                       render_mode="rgb_array" if video else None)
    writer = frames = None
    ok = False
    try:
        check_compatible(loaded, env, task_id)
        if video:
            path = _video_path(video_path, loaded.path)
            fps = 1.0 / env.control_dt if env.control_dt > 0 else 30.0
            frames = FrameRenderer(env)
            writer = _VideoWriter(path, fps)
        returns, lengths, seeds = [], [], []
        for i in range(episodes):
            ep_seed = seed + i
            loaded.reset(ep_seed)
            obs = env.reset(seed=ep_seed)
            record = writer is not None and i < video_episodes
            ret, length = 0.0, 0
            while True:
                if record:
                    writer.add(frames.frame([f"{task_id}   episode {i}", f"step {length:5d}   "
                                             f"t {length * env.control_dt:6.2f} s", f"return {ret:10.2f}"]))
                obs, reward, terminated, truncated, _ = env.step(loaded.act(obs))
                ret += float(reward[0])
                length += 1
                if bool(terminated[0] | truncated[0]):
                    break
            returns.append(ret)
            lengths.append(length)
            seeds.append(ep_seed)
        ok = True
    finally:
        if writer is not None:
            writer.close(keep=ok)
        if frames is not None:
            frames.close()
        env.close()
    result = {"returns": returns, "lengths": lengths, "seeds": seeds,
              "mean_return": float(np.mean(returns)), "std_return": float(np.std(returns)),
              "mean_length": float(np.mean(lengths)), "std_length": float(np.std(lengths)),
              "task_id": task_id, "source": loaded.kind, "policy": str(loaded.path),
              "video": str(writer.path) if writer is not None else None}
    if print_table:
        print(format_episode_table(result))
    return result


def format_episode_table(result: dict[str, Any]) -> str:
    """Episode table: seed, return, length per episode, then mean +- std."""
    lines = [f"{result['task_id']} | {result['source']} {Path(result['policy']).name} | "
             f"{len(result['returns'])} episodes",
             f"{'episode':>7}  {'seed':>6}  {'return':>12}  {'length':>7}"]
    for i, (s, r, n) in enumerate(zip(result["seeds"], result["returns"], result["lengths"], strict=True)):
        lines.append(f"{i:>7}  {s:>6}  {r:>12.2f}  {n:>7d}")
    lines.append(f"return {result['mean_return']:.2f} ± {result['std_return']:.2f}   "
                 f"length {result['mean_length']:.1f} ± {result['std_length']:.1f}")
    if result["video"]:
        lines.append(f"video: {result['video']}")
    return "\n".join(lines)
