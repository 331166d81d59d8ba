"""Checkpoint files: atomic writes, safe loads, finding the latest one."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from omegaconf import OmegaConf

from robo_ppo.errors import CheckpointError
from robo_ppo.modules.actor_critic import ActorCritic, build_actor_critic

FORMAT_VERSION = 1
_NAME = re.compile(r"^ckpt_(\d+)\.pt$")
REQUIRED_KEYS = ("format_version", "config", "model", "ppo", "iteration", "global_step", "spaces")


def checkpoint_name(global_step: int) -> str:
    return f"ckpt_{global_step:010d}.pt"


def save_checkpoint(state: dict[str, Any], directory: Path, keep: int = 3) -> Path:
    """Write ``state`` to ``directory/ckpt_<global_step>.pt`` atomically.

    The data goes to a temporary file in the same directory, is flushed and
    fsync'ed, then renamed over the final name (``os.replace`` is atomic on
    POSIX), so a crash or a signal never leaves a half-written checkpoint.
    Older checkpoints beyond the ``keep`` most recent are deleted afterwards.
    """
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / checkpoint_name(int(state["global_step"]))
    fd, tmp = tempfile.mkstemp(prefix=".tmp_", suffix=".pt", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp files are private; give the usual permissions
        os.replace(tmp, final)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if keep > 0:
        for old in list_checkpoints(directory)[:-keep]:
            old.unlink(missing_ok=True)
    return final


def list_checkpoints(directory: Path) -> list[Path]:
    """Checkpoints in ``directory`` ordered by global step (oldest first)."""
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or the latest checkpoint of a run directory.

    Raises:
        CheckpointError: the path does not exist or the run holds no checkpoint.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise CheckpointError(f"{p} does not exist; pass a run directory or a checkpoint file (.pt)")
    if p.is_file():
        return p
    for candidate in (p / "checkpoints", p):
        ckpts = list_checkpoints(candidate)
        if ckpts:
            return ckpts[-1]
    raise CheckpointError(
        f"{p} holds no checkpoint (looked for checkpoints/ckpt_*.pt); pass a run directory "
        "of a run that has written one, or a checkpoint file")


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``torch.load(weights_only=True)`` (no arbitrary
    code runs) and check it is a robo_ppo checkpoint.

    Raises:
        CheckpointError: missing, unreadable, corrupt or foreign file.
    """
    p = resolve_checkpoint(path)
    try:
        state = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises several types for corrupt files
        first_line = (str(e).splitlines() or [""])[0][:200]
        why = f"{type(e).__name__}: {first_line}" if first_line else type(e).__name__
        raise CheckpointError(
            f"cannot read checkpoint {p} ({why}); "
            "the file is corrupt or not a torch checkpoint: resume from an earlier checkpoint "
            "file or another run") from None
    if not isinstance(state, dict) or any(k not in state for k in REQUIRED_KEYS):
        raise CheckpointError(f"{p} is not a robo_ppo checkpoint (missing keys); pass a file "
                              "written by robo-ppo-train")
    config, spaces = state["config"], state["spaces"]
    if not (isinstance(config, dict) and all(isinstance(config.get(g), dict) for g in ("env", "algo", "backend"))
            and "id" in config["env"] and "name" in config["backend"]
            and isinstance(state["model"], dict)
            and isinstance(spaces, dict) and "observation" in spaces and "action" in spaces):
        raise CheckpointError(f"{p} is not a complete robo_ppo checkpoint (its config, model or spaces "
                              "are missing); pass a file written by robo-ppo-train")
    if state["format_version"] != FORMAT_VERSION:
        raise CheckpointError(f"{p} has checkpoint format {state['format_version']}, this robo_ppo "
                              f"reads format {FORMAT_VERSION}")
    state["path"] = str(p)
    return state


# ------------------------------------------------- policies in checkpoints
def space_to_dict(space: gym.Space) -> dict[str, Any]:
    """A gymnasium Box/Discrete as plain tensors (checkpoint-safe)."""
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "discrete", "n": int(space.n)}
    return {"type": "box", "low": torch.as_tensor(space.low, dtype=torch.float32),
            "high": torch.as_tensor(space.high, dtype=torch.float32)}


def space_from_dict(d: dict[str, Any]) -> gym.Space:
    if d["type"] == "discrete":
        return gym.spaces.Discrete(d["n"])
    return gym.spaces.Box(d["low"].numpy(), d["high"].numpy(), dtype=np.float32)


def policy_from_checkpoint(state: dict[str, Any], device: str | torch.device = "cpu") -> ActorCritic:
    """Rebuild the actor-critic (normalizer included) from a loaded checkpoint."""
    cfg = OmegaConf.create(state["config"])
    spaces = state["spaces"]
    obs_space = space_from_dict(spaces["observation"])
    policy = build_actor_critic(cfg.algo, obs_space.shape[0], space_from_dict(spaces["action"]),
                                spaces.get("critic_obs_dim"))
    policy.load_state_dict(state["model"])
    return policy.to(device).eval()
