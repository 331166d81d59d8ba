"""Checkpoint files: atomic writes, safe loads, finding the latest one that loads."""

from __future__ import annotations

import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from omegaconf import OmegaConf

from robo_ppo.config import upgrade_saved_config
from robo_ppo.errors import CheckpointError
from robo_ppo.modules.actor_critic import ActorCritic, build_actor_critic

log = logging.getLogger("robo_ppo")
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


def run_checkpoints(path: str | Path) -> tuple[Path, list[Path]]:
    """Where the checkpoints of ``path`` are: ``(path, [path])`` for a file,
    else the run directory's checkpoints (``checkpoints/ckpt_*.pt``, or
    ``ckpt_*.pt`` in the directory itself), newest first.

    Raises:
        CheckpointError: the path does not exist or the run holds no checkpoint.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise CheckpointError(f"{p} does not exist; pass a run directory or a checkpoint file (.pt)")
    if p.is_file():
        return p, [p]
    for candidate in (p / "checkpoints", p):
        ckpts = list_checkpoints(candidate)
        if ckpts:
            return p, ckpts[::-1]
    raise CheckpointError(
        f"{p} holds no checkpoint (looked for checkpoints/ckpt_*.pt); pass a run directory "
        "of a run that has written one, or a checkpoint file")


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or the newest checkpoint of a run directory (not opened).

    Raises:
        CheckpointError: the path does not exist or the run holds no checkpoint.
    """
    return run_checkpoints(path)[1][0]


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint file, or the newest checkpoint of a run directory that
    loads and verifies, with ``torch.load(weights_only=True)`` (no arbitrary
    code runs), and check it is a robo_ppo checkpoint (``read_checkpoint``).

    For a run directory, newer checkpoints that fail (truncated by a killed
    process or a full disk, corrupt, foreign) are skipped, and one warning
    line on the ``robo_ppo`` logger names each with its reason. The returned
    dict has ``path`` (the file loaded) and ``skipped`` (``[(path, reason)]``,
    newest first; empty when the newest loaded).

    Raises:
        CheckpointError: missing path, a run without checkpoints, a file that
            is unreadable, corrupt or foreign, or a run none of whose
            checkpoints loads (naming each with its reason).
    """
    p, candidates = run_checkpoints(path)
    if p.is_file():
        state = read_checkpoint(p, map_location)
        state["skipped"] = []
        return state
    skipped: list[tuple[str, str]] = []
    for ckpt in candidates:
        try:
            state = read_checkpoint(ckpt, map_location)
        except _Unreadable as e:
            skipped.append((str(ckpt), e.reason))
            continue
        if skipped:
            log.warning("skipped %d damaged checkpoint(s) of %s, newest first: %s; loaded %s", len(skipped), p,
                        "; ".join(f"{Path(f).name} ({why})" for f, why in skipped), ckpt.name)
        state["skipped"] = skipped
        return state
    raise CheckpointError(
        f"cannot read checkpoint: none of the {len(skipped)} in {p} loads ("
        + "; ".join(f"{Path(f).name}: {why}" for f, why in skipped) + "); resume from another run")


class _Unreadable(CheckpointError):
    """A checkpoint file that does not load or verify; ``reason`` says why (no path)."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


def read_checkpoint(p: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load one checkpoint file and verify it is a complete robo_ppo checkpoint
    of this format version. Returns the state with ``path`` set and its config
    in today's key names (``robo_ppo.config.upgrade_saved_config``: a run saved
    before a key rename still resumes, exports and replays).

    Raises:
        CheckpointError: unreadable, corrupt or foreign file (its ``reason``
            attribute holds the cause without the path).
    """
    try:
        state = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises several types for corrupt files
        first_line = (str(e).splitlines() or [""])[0][:200]
        why = f"{type(e).__name__}: {first_line}" if first_line else type(e).__name__
        raise _Unreadable(
            f"cannot read checkpoint {p} ({why}); "
            "the file is corrupt or not a torch checkpoint: resume from an earlier checkpoint "
            "file, the run directory (its newest checkpoint that loads) or another run", why) from None
    if not isinstance(state, dict) or any(k not in state for k in REQUIRED_KEYS):
        raise _Unreadable(f"{p} is not a robo_ppo checkpoint (missing keys); pass a file "
                          "written by robo-ppo-train", "not a robo_ppo checkpoint (missing keys)")
    config, spaces = upgrade_saved_config(state["config"]), state["spaces"]  # a run saved before a key rename
    if not (isinstance(config, dict) and all(isinstance(config.get(g), dict) for g in ("env", "algo", "engine"))
            and "id" in config["env"] and "name" in config["engine"]
            and isinstance(state["model"], dict)
            and isinstance(spaces, dict) and "observation" in spaces and "action" in spaces):
        raise _Unreadable(f"{p} is not a complete robo_ppo checkpoint (its config, model or spaces "
                          "are missing); pass a file written by robo-ppo-train",
                          "incomplete (config, model or spaces missing)")
    if state["format_version"] != FORMAT_VERSION:
        raise _Unreadable(f"{p} has checkpoint format {state['format_version']}, this robo_ppo "
                          f"reads format {FORMAT_VERSION}", f"format {state['format_version']}")
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
