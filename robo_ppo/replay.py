"""``robo-ppo-replay``: run a trained policy in the simulator, print returns, write a video.

    robo-ppo-replay policy=outputs/hopper/2026-11-23_10-00-00              # latest checkpoint
    robo-ppo-replay policy=outputs/hopper/.../policy.onnx episodes=10
    robo-ppo-replay policy=run/policy.onnx video=true video_path=hopper.mp4

``policy`` is a run directory, a checkpoint file (``.pt``) or an ONNX file
written by ``robo-ppo-export``. Episodes run one after another in one
gymnasium env; episode ``i`` is reset with seed ``seed + i`` (the same
initial states as ``Trainer.evaluate`` with ``episodes`` envs and that seed).
Actions are deterministic (Gaussian mean / argmax) by default;
``deterministic=false`` samples from a checkpoint's policy (an ONNX file holds
only the deterministic graph).

Video (``video=true``): the first ``video_episodes`` episodes are rendered
offscreen at ``1 / control_dt`` frames per second and written as H.264 MP4
with imageio-ffmpeg. Offscreen rendering needs an OpenGL backend without a
display: ``MUJOCO_GL=egl`` (the default this command sets when the variable is
unset; Debian/Ubuntu packages ``libegl1 libgl1 libegl-mesa0
libgl1-mesa-dri``, software Mesa is enough) or ``MUJOCO_GL=osmesa``
(``libosmesa6``). CartPole renders through pygame (``pip install pygame``).

Before running, the policy is checked against the task: obs_dim, action
type/dim and (ONNX) the task id in the file's metadata. A mismatch raises
``ConfigError`` naming the fix.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import MISSING, OmegaConf

from robo_ppo.errors import ConfigError, report_errors


@dataclass
class ReplayConfig:
    """Schema of ``conf/replay.yaml`` (``robo-ppo-replay``)."""

    policy: str = MISSING
    """Run directory, checkpoint file (.pt) or ONNX file (.onnx)."""
    episodes: int = 5
    """Episodes to run (one after another)."""
    seed: int = 0
    """Episode i is reset with seed + i."""
    deterministic: bool = True
    """Mean / argmax actions; false samples from the policy (checkpoints only)."""
    env_id: str | None = None
    """Gymnasium task to run; null = the task the policy was trained on (must match it)."""
    max_episode_steps: int | None = None
    """Time limit override; null = the training run's limit."""
    video: bool = False
    """Write an MP4 of the first ``video_episodes`` episodes."""
    video_path: str | None = None
    """MP4 path; null = ``replay.mp4`` next to the policy (in the run directory)."""
    video_episodes: int = 1
    """Episodes recorded when ``video=true`` (software rendering costs ~60 ms per frame)."""
    summary_json: str | None = None
    """Also write the returns/lengths as JSON here (null = don't)."""
    debug: bool = False
    """Show full tracebacks for user errors."""


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


def _onnx_policy(path: Path, deterministic: bool) -> LoadedPolicy:
    import onnxruntime as ort

    from robo_ppo.export import read_metadata

    if not deterministic:
        raise ConfigError(f"{path.name} holds only the deterministic policy (mean / argmax); replay "
                          "it with deterministic=true, or pass the run's checkpoint to sample actions")
    meta = read_metadata(path)
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


def _checkpoint_policy(path: Path, deterministic: bool) -> LoadedPolicy:
    from robo_ppo.runner.checkpoint import load_checkpoint, policy_from_checkpoint

    state = load_checkpoint(path)
    engine = state["config"].get("backend", {}).get("name", "gymnasium")
    if engine == "brax":
        raise ConfigError(
            f"{state['path']} was trained on the Brax engine, whose observations differ from "
            "gymnasium's (ant: 27 vs 105); replay runs gymnasium tasks only: judge Brax policies "
            "by the run's own evaluation (metrics.csv eval_return)")
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


class _VideoWriter:
    """Streams frames into an MP4 written to a temp file and renamed on close."""

    def __init__(self, path: Path, fps: float):
        import imageio.v2 as imageio

        path.parent.mkdir(parents=True, exist_ok=True)
        fd, self.tmp = tempfile.mkstemp(prefix=".tmp_", suffix=".mp4", dir=path.parent)
        os.close(fd)
        self.path = path
        self.frames = 0
        self.writer = imageio.get_writer(self.tmp, fps=fps, codec="libx264", quality=7,
                                         macro_block_size=16, ffmpeg_log_level="error")

    def add(self, frame: np.ndarray) -> None:
        self.writer.append_data(np.asarray(frame, dtype=np.uint8))
        self.frames += 1

    def close(self, keep: bool) -> None:
        self.writer.close()
        if keep and self.frames:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(self.tmp, 0o666 & ~umask)
            os.replace(self.tmp, self.path)
        else:
            Path(self.tmp).unlink(missing_ok=True)


def _render(env) -> np.ndarray:
    try:
        frame = env.render(0)
    except Exception as e:  # missing GL backend / pygame surfaces here
        why = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
        if "pygame" in why:
            raise ConfigError(f"video of {env.env_id} needs pygame ({why}): pip install pygame, "
                              "or run without video=true") from None
        raise ConfigError(
            f"offscreen rendering failed ({why}); set MUJOCO_GL=egl (Debian/Ubuntu: apt-get install "
            "libegl1 libgl1 libegl-mesa0 libgl1-mesa-dri) or MUJOCO_GL=osmesa (apt-get install "
            "libosmesa6), or run without video=true") from None
    if frame is None:
        raise ConfigError("the env returned no frame; video needs render_mode='rgb_array' support")
    return frame


def replay(policy: str | Path, episodes: int = 5, seed: int = 0, deterministic: bool = True,
           env_id: str | None = None, max_episode_steps: int | None = None, video: bool = False,
           video_path: str | Path | None = None, video_episodes: int = 1,
           print_table: bool = True) -> dict[str, Any]:
    """Run ``episodes`` episodes of ``policy`` in the gymnasium engine.

    Returns ``{"returns": [float], "lengths": [int], "seeds": [int],
    "mean_return", "std_return", "mean_length", "std_length", "task_id",
    "source", "video"}``; returns are raw (unscaled) environment rewards.

    Raises:
        CheckpointError: the policy file cannot be read.
        ConfigError: bad arguments, a policy that does not fit the task, or
            rendering not available.
    """
    from robo_ppo.envs import make_vec_env

    if episodes < 1:
        raise ConfigError(f"episodes must be >= 1, got {episodes}")
    if video and video_episodes < 1:
        raise ConfigError(f"video_episodes must be >= 1 with video=true, got {video_episodes}")
    loaded = load_policy(policy, deterministic)
    task_id = env_id or loaded.task["id"]
    limit = max_episode_steps if max_episode_steps is not None else loaded.task["max_episode_steps"]
    env_cfg = OmegaConf.create({"id": task_id, "max_episode_steps": limit,
                                "kwargs": dict(loaded.task["kwargs"]) if task_id == loaded.task["id"] else {}})
    if video:
        # read by gymnasium when the first frame is rendered; egl works headless with software Mesa
        os.environ.setdefault("MUJOCO_GL", "egl")
        logging.getLogger("OpenGL").setLevel(logging.WARNING)  # PyOpenGL's INFO notice
    env = make_vec_env(env_cfg, OmegaConf.create({"name": "gymnasium"}), 1, device="cpu",
                       render_mode="rgb_array" if video else None)
    writer = None
    ok = False
    try:
        check_compatible(loaded, env, task_id)
        if video:
            if video_path is None:
                base = loaded.path.parent.parent if loaded.path.parent.name == "checkpoints" else loaded.path.parent
                video_path = base / "replay.mp4"
            video_path = Path(video_path).expanduser()
            if video_path.suffix.lower() != ".mp4":
                raise ConfigError(f"video_path must end in .mp4, got {video_path}")
            fps = 1.0 / env.control_dt if env.control_dt > 0 else 30.0
            writer = _VideoWriter(video_path, fps)
        returns, lengths, seeds = [], [], []
        for i in range(episodes):
            ep_seed = seed + i
            loaded.reset(ep_seed)
            obs = env.reset(seed=ep_seed)
            record = writer is not None and i < video_episodes
            ret, length = 0.0, 0
            while True:
                if record:
                    writer.add(_render(env))
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
        env.close()
    result = {"returns": returns, "lengths": lengths, "seeds": seeds,
              "mean_return": float(np.mean(returns)), "std_return": float(np.std(returns)),
              "mean_length": float(np.mean(lengths)), "std_length": float(np.std(lengths)),
              "task_id": task_id, "source": loaded.kind, "policy": str(loaded.path),
              "video": str(writer.path) if writer is not None else None}
    if print_table:
        print(format_table(result))
    return result


def format_table(result: dict[str, Any]) -> str:
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


# --------------------------------------------------------------------------- CLI
def register_replay_config() -> None:
    """Register ``ReplayConfig`` as ``replay_schema`` (used by conf/replay.yaml)."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="replay_schema", node=ReplayConfig)


@report_errors
def _task(cfg) -> None:
    import json

    if OmegaConf.is_missing(cfg, "policy"):
        raise ConfigError("no policy given: robo-ppo-replay policy=<run dir, ckpt_*.pt or policy.onnx> "
                          "[episodes=5] [video=true]")
    torch.set_num_threads(1)
    result = replay(cfg.policy, episodes=cfg.episodes, seed=cfg.seed, deterministic=cfg.deterministic,
                    env_id=cfg.env_id, max_episode_steps=cfg.max_episode_steps, video=cfg.video,
                    video_path=cfg.video_path, video_episodes=cfg.video_episodes)
    if cfg.summary_json:
        Path(cfg.summary_json).write_text(json.dumps(result, indent=2))
    sys.stdout.flush()


def main() -> None:
    from robo_ppo.hydra_utils import run_app

    register_replay_config()
    run_app(_task, "replay")


if __name__ == "__main__":
    main()
