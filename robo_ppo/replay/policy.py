"""Loading a policy to act in the simulator: an ONNX file (onnxruntime) or a run directory / checkpoint
(torch), as one :class:`LoadedPolicy`, and checking that it fits the task it is about to run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robo_ppo.errors import ConfigError


@dataclass
class LoadedPolicy:
    """A policy ready to act, whatever file it came from.

    ``act(obs float32 Tensor[1, obs_dim]) -> actions`` (float32 ``[1, act_dim]``
    or int64 ``[1]``); ``task`` holds ``id``, ``max_episode_steps``, ``kwargs``
    of the training env; ``obs_dim``/``act_dim``/``discrete`` describe the I/O.
    """

    kind: str  # "onnx" | "checkpoint"
    path: Path
    act: Callable[[torch.Tensor], torch.Tensor]
    obs_dim: int
    act_dim: int
    discrete: bool
    task: dict[str, Any]
    reset: Callable[[int], None]


def _onnx_policy(path: Path, deterministic: bool, meta: dict[str, Any] | None = None) -> LoadedPolicy:
    import onnxruntime as ort

    from robo_ppo.export import read_metadata

    if not deterministic:
        raise ConfigError(f"{path.name} holds only the deterministic policy (mean / argmax); replay "
                          "it with deterministic=true, or pass the run's checkpoint to sample actions")
    meta = meta if meta is not None else read_metadata(path)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])

    def act(obs: torch.Tensor) -> torch.Tensor:
        x = obs.detach().cpu().numpy().astype(np.float32, copy=False)
        return torch.from_numpy(session.run(["actions"], {"obs": x})[0])

    env_cfg = dict(meta.get("env_config") or {})
    task = {"id": meta["task_id"], "max_episode_steps": env_cfg.get("max_episode_steps"),
            "kwargs": env_cfg.get("kwargs") or {}}
    return LoadedPolicy("onnx", path, act, int(meta["obs_dim"]), int(meta["act_dim"]),
                        meta["action_type"] == "discrete", task, lambda seed: None)


def _checkpoint_policy(path: Path, deterministic: bool, state: dict[str, Any] | None = None) -> LoadedPolicy:
    from robo_ppo.runner.checkpoint import load_checkpoint, policy_from_checkpoint

    state = state if state is not None else load_checkpoint(path)
    engine = state["config"].get("engine", {}).get("name", "gymnasium")
    if engine == "brax":
        raise ConfigError(
            f"{state['path']} was trained on the Brax engine, whose observations differ from "
            "gymnasium's (ant: 27 vs 105); replay runs gymnasium tasks and robot policies only: judge "
            "Brax policies by the run's own evaluation (metrics.csv eval_return)")
    policy = policy_from_checkpoint(state, device="cpu")
    generator = torch.Generator()

    @torch.no_grad()
    def act(obs: torch.Tensor) -> torch.Tensor:
        if deterministic:
            return policy(obs)
        return policy.act(policy.normalize(obs), generator=generator).actions

    env = state["config"]["env"]
    task = {"id": env["id"], "max_episode_steps": env.get("max_episode_steps"),
            "kwargs": env.get("kwargs") or {}}
    return LoadedPolicy("checkpoint", Path(state["path"]), act, policy.obs_dim, policy.act_dim,
                        policy.is_discrete, task, lambda seed: generator.manual_seed(int(seed)))


def load_policy(path: str | Path, deterministic: bool = True) -> LoadedPolicy:
    """Load a run directory / checkpoint (torch) or an ONNX file (onnxruntime).

    Raises:
        CheckpointError: missing, unreadable or foreign file.
        ConfigError: ``deterministic=False`` with an ONNX file.
    """
    p = Path(path).expanduser()
    if p.suffix == ".onnx":
        return _onnx_policy(p, deterministic)
    return _checkpoint_policy(p, deterministic)


def check_compatible(policy: LoadedPolicy, env, env_id: str) -> None:
    """Refuse a policy whose task id (ONNX metadata) or I/O sizes do not fit ``env``.

    Raises:
        ConfigError: naming both sides and the fix.
    """
    import gymnasium as gym

    what = f"{policy.path.name} (trained on {policy.task['id']}"
    fix = "omit env_id to replay the policy on its own task, or pass a policy trained on " + env_id
    if policy.task["id"] != env_id:
        raise ConfigError(f"{what}) does not match the task {env_id}; {fix}")
    env_discrete = isinstance(env.action_space, gym.spaces.Discrete)
    env_act = int(env.action_space.n) if env_discrete else int(env.action_space.shape[0])
    problems = []
    if policy.obs_dim != env.obs_dim:
        problems.append(f"obs_dim {policy.obs_dim} vs {env.obs_dim}")
    if policy.discrete != env_discrete:
        problems.append(f"{'discrete' if policy.discrete else 'continuous'} policy vs "
                        f"{'discrete' if env_discrete else 'continuous'} task")
    elif policy.act_dim != env_act:
        problems.append(f"act_dim {policy.act_dim} vs {env_act}")
    if problems:
        raise ConfigError(f"{what}, {policy.kind}) does not fit {env_id}: " + "; ".join(problems)
                          + f" (policy vs task); {fix}")
