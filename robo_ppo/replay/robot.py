"""Replay of a robot policy (one with ``robot`` metadata) in the deployment kit's MuJoCo harness
(``export/harness.py``): the command schedule is parsed (``default``, ``random``, ``reversals`` or explicit segments, by
the kit's ``schedules.parse_schedule``), a checkpoint is first exported to a temporary ONNX file, the
harness runs the robot-side controller (optionally filming it with the command overlay) and the kit's
per-segment table is printed."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from robo_ppo.deploy_kit import harness, report, schedules
from robo_ppo.deploy_kit.robot_metadata import ContractError, RobotMetadata
from robo_ppo.errors import ConfigError
from robo_ppo.replay.video import _publish, _video_path, overlay_text


def _robot_frame_lines(info: dict[str, Any]) -> list[str]:
    names = info["commands"]
    return [f"t {info['time_s']:6.2f} s   segment {info['segment'] + 1}/{info['segments']}",
            "command   " + "  ".join(f"{n} {v:+.2f}" for n, v in zip(names, info["command"], strict=True)),
            "measured  " + "  ".join(f"{n} {v:+.2f}" for n, v in zip(names, info["velocity"], strict=True)),
            f"falls {info['falls']}"]


def _replay_robot(path: Path, kind: str, robot: dict[str, Any], task_id: str, state: dict[str, Any] | None, *,
                  seed: int, deterministic: bool, env_id: str | None, schedule: Any, segments: int,
                  segment_seconds: float, video: bool, video_path: str | Path | None,
                  print_table: bool) -> dict[str, Any]:
    """A robot policy in the deployment kit's MuJoCo harness (see the module docstring)."""
    from robo_ppo.export import export_checkpoint

    if not deterministic:
        raise ConfigError(f"{path.name}: a robot policy replays as its deterministic ONNX controller; "
                          "use deterministic=true")
    if env_id is not None and env_id != task_id:
        raise ConfigError(f"{path.name} (trained on {task_id}) does not match the task {env_id}; omit env_id")
    if OmegaConf.is_config(schedule):
        schedule = OmegaConf.to_container(schedule)
    try:
        meta = RobotMetadata.from_dict(robot, path.name)
        plan = schedules.parse_schedule(schedule, meta.commands, meta.command_ranges, segments=segments,
                                        seconds=segment_seconds, seed=seed)
    except (ContractError, schedules.ScheduleError) as e:
        raise ConfigError(str(e)) from None
    out = _video_path(video_path, path) if video else None
    with tempfile.TemporaryDirectory(prefix="robo_ppo_replay_") as tmp:
        onnx_path = path if kind == "onnx" else export_checkpoint(state["path"], Path(tmp) / "policy.onnx")["path"]
        tmp_video = None
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp_video = out.parent / f".tmp_{os.getpid()}_{out.name}"
        try:
            result = harness.run(onnx_path, plan, seed=seed, video=tmp_video,
                                 on_frame=lambda frame, info: overlay_text(frame, _robot_frame_lines(info)))
            if tmp_video is not None:
                _publish(tmp_video, out)
        except harness.ERRORS as e:
            raise ConfigError(str(e)) from None
        finally:
            if tmp_video is not None:
                tmp_video.unlink(missing_ok=True)
    result.update({"task_id": task_id, "source": kind, "policy": str(path), "robot": meta.name,
                   "schedule": [list(seg) for seg in plan], "video": str(out) if out is not None else None})
    if print_table:
        print(format_robot_table(result))
    return result


def format_robot_table(result: dict[str, Any]) -> str:
    """A robot replay's table: a header line, then the deployment kit's per-segment table."""
    lines = [f"{result['task_id']} | {result['source']} {Path(result['policy']).name} | robot "
             f"{result['robot']}, {len(result['segments'])} command segments",
             report.format_table(result)]
    if result["video"]:
        lines.append(f"video: {result['video']}")
    return "\n".join(lines)
