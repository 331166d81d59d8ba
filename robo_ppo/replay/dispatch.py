"""``replay``: read the policy file (ONNX metadata or checkpoint) and hand it to the loop that runs
it, the deployment kit's robot loop for a robot policy, else the gymnasium episode loop; ``format_table``
prints either result."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from robo_ppo.deploy_kit.headless import default_gl
from robo_ppo.errors import ConfigError
from robo_ppo.replay.episodes import _replay_episodes, format_episode_table
from robo_ppo.replay.kit import shipped_policies
from robo_ppo.replay.policy import _checkpoint_policy, _onnx_policy
from robo_ppo.replay.robot import _replay_robot, format_robot_table


def replay(policy: str | Path, episodes: int = 5, seed: int = 0, deterministic: bool = True,
           env_id: str | None = None, max_episode_steps: int | None = None, video: bool = False,
           video_path: str | Path | None = None, video_episodes: int = 1, print_table: bool = True,
           schedule: Any = "default", segments: int = 20, segment_seconds: float = 5.0) -> dict[str, Any]:
    """Run ``episodes`` episodes of ``policy`` in the gymnasium engine, or a robot policy's command
    ``schedule`` in the deployment kit's loop.

    Returns ``{"returns": [float], "lengths": [int], "seeds": [int],
    "mean_return", "std_return", "mean_length", "std_length", "task_id",
    "source", "video"}``; returns are raw (unscaled) environment rewards.
    Robot policies: ``{"segments": [...], "summary": {...}}`` as the kit's
    ``run`` returns it, plus ``task_id``, ``source``, ``policy``, ``robot``,
    ``schedule``, ``video``.

    Raises:
        CheckpointError: the policy file cannot be read.
        ConfigError: bad arguments, a policy that does not fit the task, or
            rendering not available.
    """
    from robo_ppo.export import read_metadata
    from robo_ppo.runner.checkpoint import load_checkpoint

    if episodes < 1:
        raise ConfigError(f"episodes must be >= 1, got {episodes}")
    if video and video_episodes < 1:
        raise ConfigError(f"video_episodes must be >= 1 with video=true, got {video_episodes}")
    logging.getLogger("OpenGL").setLevel(logging.WARNING)  # PyOpenGL's INFO notice when MUJOCO_GL is set
    if video:
        default_gl()   # headless: MUJOCO_GL=egl where EGL is installed (gymnasium reads it at the first frame)
    p = Path(policy).expanduser()
    if not p.exists() and str(policy) in shipped_policies():
        p = shipped_policies()[str(policy)]
    meta = state = None
    if p.suffix == ".onnx":
        meta = read_metadata(p)
        robot, task_id = meta.get("robot"), meta["task_id"]
    else:
        state = load_checkpoint(p)
        robot, task_id = (state.get("env_meta") or {}).get("robot"), state["config"]["env"]["id"]
    if meta is not None and not robot and meta.get("engine") == "brax":
        raise ConfigError(
            f"{p} was exported from a Brax-engine run of {task_id} and has no robot metadata; replay runs "
            "gymnasium tasks and robot policies only: re-export the run's checkpoint with robo-ppo-export "
            "(robot task checkpoints carry the robot metadata), or judge the policy by the run's own "
            "evaluation (metrics.csv eval_return)")
    if robot is not None:  # a robot policy (its metadata checked by the kit, even when malformed)
        return _replay_robot(Path(state["path"]) if state else p, "checkpoint" if state else "onnx", robot, task_id,
                             state, seed=seed, deterministic=deterministic, env_id=env_id, schedule=schedule,
                             segments=segments, segment_seconds=segment_seconds, video=video,
                             video_path=video_path, print_table=print_table)
    loaded = _onnx_policy(p, deterministic, meta) if meta is not None else _checkpoint_policy(p, deterministic, state)
    return _replay_episodes(loaded, episodes=episodes, seed=seed, env_id=env_id,
                            max_episode_steps=max_episode_steps, video=video, video_path=video_path,
                            video_episodes=video_episodes, print_table=print_table)


def format_table(result: dict[str, Any]) -> str:
    """Episode table: seed, return, length per episode, then mean +- std (robot policies: a header line,
    then the deployment kit's per-segment table)."""
    return format_robot_table(result) if result.get("robot") else format_episode_table(result)
