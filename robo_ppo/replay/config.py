"""The ``robo-ppo-replay`` command: its Hydra config schema (``ReplayConfig``, read by
``conf/replay.yaml``), the task that turns a composed config into a :func:`replay` call and an optional
JSON summary, and the console-script ``main``."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import MISSING, OmegaConf

from robo_ppo.deploy_kit.report import json_safe
from robo_ppo.errors import ConfigError, report_errors
from robo_ppo.replay.dispatch import replay


@dataclass
class ReplayConfig:
    """Schema of ``conf/replay.yaml`` (``robo-ppo-replay``)."""

    policy: str = MISSING
    """Run directory, checkpoint file (.pt) or ONNX file (.onnx)."""
    episodes: int = 5
    """Episodes to run (one after another)."""
    seed: int = 0
    """Episode i is reset with seed + i (robot policies: seeds the resets and a random schedule)."""
    deterministic: bool = True
    """Mean / argmax actions; false samples from the policy (checkpoints only)."""
    env_id: str | None = None
    """Gymnasium task to run; null = the task the policy was trained on (must match it)."""
    max_episode_steps: int | None = None
    """Time limit override; null = the training run's limit."""
    schedule: Any = "default"
    """Robot policies: ``default`` (forward, turn, sidestep, backward, stop; 5 s each), ``random``
    (``segments`` x ``segment_seconds`` s, commands drawn from the policy's command ranges with ``seed``),
    ``reversals`` (each command at full range, then at once its opposite; the kit's
    ``schedules.reversal_schedule``), or a list of ``[seconds, *command]`` in the policy's command order (e.g. vx, vy, yaw_rate)."""
    segments: int = 20
    """Robot policies, ``schedule=random``: number of command segments."""
    segment_seconds: float = 5.0
    """Robot policies, ``schedule=random``: seconds per segment."""
    video: bool = False
    """Write an MP4 of the first ``video_episodes`` episodes (robot policies: of the whole schedule)."""
    video_path: str | None = None
    """MP4 path; null = ``replay.mp4`` next to the policy (in the run directory)."""
    video_episodes: int = 1
    """Episodes recorded when ``video=true`` (software rendering costs ~20-60 ms per frame)."""
    summary_json: str | None = None
    """Also write the result (returns/lengths, or a robot's segment table) as JSON here (null = don't)."""
    debug: bool = False
    """Show full tracebacks for user errors."""


def register_replay_config() -> None:
    """Register ``ReplayConfig`` as ``replay_schema`` (used by conf/replay.yaml)."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="replay_schema", node=ReplayConfig)


@report_errors
def _task(cfg) -> None:
    if OmegaConf.is_missing(cfg, "policy"):
        raise ConfigError("no policy given: robo-ppo-replay policy=<run dir, ckpt_*.pt or policy.onnx> "
                          "[episodes=5] [video=true]")
    torch.set_num_threads(1)
    result = replay(cfg.policy, episodes=cfg.episodes, seed=cfg.seed, deterministic=cfg.deterministic,
                    env_id=cfg.env_id, max_episode_steps=cfg.max_episode_steps, video=cfg.video,
                    video_path=cfg.video_path, video_episodes=cfg.video_episodes, schedule=cfg.schedule,
                    segments=cfg.segments, segment_seconds=cfg.segment_seconds)
    if cfg.summary_json:
        Path(cfg.summary_json).write_text(json.dumps(json_safe(result), indent=2))
    sys.stdout.flush()


def main() -> None:
    from robo_ppo.hydra_utils import run_app

    register_replay_config()
    run_app(_task, "replay")
