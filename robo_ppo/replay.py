"""``robo-ppo-replay``: run a trained policy in the simulator, print returns, write a video.

    robo-ppo-replay policy=outputs/hopper/2026-11-23_10-00-00              # latest checkpoint
    robo-ppo-replay policy=outputs/hopper/.../policy.onnx episodes=10
    robo-ppo-replay policy=run/policy.onnx video=true video_path=hopper.mp4
    robo-ppo-replay policy=outputs/go1_joystick/.../policy.onnx schedule=random segments=4 video=true

``policy`` is a run directory, a checkpoint file (``.pt``) or an ONNX file
written by ``robo-ppo-export``. Episodes run one after another in one
gymnasium env; episode ``i`` is reset with seed ``seed + i`` (the same
initial states as ``Trainer.evaluate`` with ``episodes`` envs and that seed).
Actions are deterministic (Gaussian mean / argmax) by default;
``deterministic=false`` samples from a checkpoint's policy (an ONNX file holds
only the deterministic graph).

Robot policies (any policy with ``robot`` metadata, whatever the robot) run
in the deployment kit's robot-side loop instead (``export/deploy.py``, shipped
in the wheel as ``robo_ppo/deploy_kit``): the robot follows a command schedule
(``schedule=default|random`` or a list of ``[seconds, *command]`` in the
policy's command order, e.g. ``[seconds, vx, vy, yaw_rate]``;
``segments``/``segment_seconds`` shape a random one) and the kit's per-segment
table is printed. A checkpoint is first exported to a temporary ONNX file (with
the export's parity check). ``episodes`` and ``max_episode_steps`` do not apply
there.

Video (``video=true``): the first ``video_episodes`` episodes are rendered
offscreen at ``1 / control_dt`` frames per second and written as H.264 MP4
with imageio-ffmpeg. MuJoCo tasks are filmed by a tracking camera that follows
the robot's root body (the first free-moving child of the world body) from the
side, as MuJoCo's viewers do, so a running robot stays in the picture; frames
carry an overlay with the step, time and return so far (robots: time,
segment, commanded and measured velocities, falls). Offscreen rendering needs
an OpenGL backend without a display: ``MUJOCO_GL=egl`` (the default this
command sets when the variable is unset; Debian/Ubuntu packages ``libegl1
libgl1 libegl-mesa0 libgl1-mesa-dri``, software Mesa is enough) or
``MUJOCO_GL=osmesa`` (``libosmesa6``). CartPole renders through pygame (``pip
install pygame``).

Before running, the policy is checked against the task: obs_dim, action
type/dim and (ONNX) the task id in the file's metadata. A mismatch raises
``ConfigError`` naming the fix.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
import math
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
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
    or a list of ``[seconds, *command]`` in the policy's command order (e.g. vx, vy, yaw_rate)."""
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
    engine = state["config"].get("backend", {}).get("name", "gymnasium")
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


# --------------------------------------------------------------------------- video
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
            _publish(Path(self.tmp), self.path)
        else:
            Path(self.tmp).unlink(missing_ok=True)


def _publish(tmp: Path, path: Path) -> None:
    """Give a finished temp file the usual permissions and rename it to ``path`` (atomic)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)


def _render_failed(e: Exception) -> ConfigError:
    why = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
    return ConfigError(
        f"offscreen rendering failed ({why}); set MUJOCO_GL=egl (Debian/Ubuntu: apt-get install "
        "libegl1 libgl1 libegl-mesa0 libgl1-mesa-dri) or MUJOCO_GL=osmesa (apt-get install "
        "libosmesa6), or run without video=true")


def _render(env) -> np.ndarray:
    """The env's own frame (``render_mode='rgb_array'``): tasks without a MuJoCo model (CartPole)."""
    try:
        frame = env.render(0)
    except Exception as e:  # missing GL backend / pygame surfaces here
        why = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
        if "pygame" in why:
            raise ConfigError(f"video of {env.env_id} needs pygame ({why}): pip install pygame, "
                              "or run without video=true") from None
        raise _render_failed(e) from None
    if frame is None:
        raise ConfigError("the env returned no frame; video needs render_mode='rgb_array' support")
    return frame


def robot_root_body(model) -> int:
    """The robot's base body in a MuJoCo model: the first child of the world body with a free joint,
    else the first with any joint (a planar robot's root, a cart), else body 1."""
    import mujoco

    moving = [b for b in range(1, model.nbody) if model.body_parentid[b] == 0 and model.body_jntnum[b] > 0]
    free = [b for b in moving if model.jnt_type[model.body_jntadr[b]] == mujoco.mjtJoint.mjJNT_FREE]
    return (free or moving or [min(1, model.nbody - 1)])[0]


def tracking_camera(model, data, body: int | None = None):
    """A ``mujoco.MjvCamera`` of type TRACKING on ``body`` (default: :func:`robot_root_body`), as MuJoCo's
    viewers track a body: it keeps its distance and angles and follows the body's subtree centre of mass.
    Side view (azimuth 90: the x axis, along which planar robots run, goes left to right), 20 degrees from
    above, at 3x the robot's radius (geoms of the body's tree around its centre of mass, from ``data``)."""
    import mujoco

    body = robot_root_body(model) if body is None else body
    root = model.body_rootid[body]
    geoms = np.flatnonzero(model.body_rootid[model.geom_bodyid] == root)
    com = data.subtree_com[body]
    radius = float(np.max(np.linalg.norm(data.geom_xpos[geoms] - com, axis=1) + model.geom_rbound[geoms])) \
        if geoms.size else float(model.stat.extent)
    cam = mujoco.MjvCamera()
    cam.type = mujoco.mjtCamera.mjCAMERA_TRACKING
    cam.trackbodyid = body
    cam.distance, cam.azimuth, cam.elevation = max(3.0 * radius, 1.0), 90.0, -20.0
    return cam


@functools.cache
def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)  # scalable with Pillow >= 10.1 (FreeType)
    except TypeError:
        return ImageFont.load_default()


def overlay_text(frame: np.ndarray, lines: list[str]) -> np.ndarray:
    """``lines`` in white on a translucent dark box in the frame's top-left corner.

    ``frame`` uint8 ``[H, W, 3]``; returns a new array of the same shape (Pillow, a matplotlib
    dependency; without Pillow the frame comes back unchanged)."""
    try:
        from PIL import Image, ImageDraw
    except ImportError:
        return frame
    img = Image.fromarray(np.ascontiguousarray(frame, dtype=np.uint8)).convert("RGBA")
    layer = Image.new("RGBA", img.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    font = _font(max(10, img.size[1] // 32))
    boxes = [draw.textbbox((0, 0), line, font=font) for line in lines]
    line_h = max(b[3] for b in boxes) + 3
    pad, margin = 5, 6
    width = max(b[2] for b in boxes) + 2 * pad
    draw.rectangle([margin, margin, margin + width, margin + len(lines) * line_h + 2 * pad - 3],
                   fill=(0, 0, 0, 140))
    for i, line in enumerate(lines):
        draw.text((margin + pad, margin + pad + i * line_h), line, fill=(255, 255, 255, 255), font=font)
    return np.asarray(Image.alpha_composite(img, layer).convert("RGB"))


class FrameRenderer:
    """Video frames of env 0 of a gymnasium VecEnv.

    MuJoCo tasks: an offscreen ``mujoco.Renderer`` on the env's model and data with a
    :func:`tracking_camera` on the robot's root body (``camera``, built at the first reset), no shadows
    and no multisampling (~5x faster in software GL). Other tasks: the env's own ``render``.
    ``frame(lines)`` returns uint8 ``[H, W, 3]`` with ``lines`` overlaid.
    """

    def __init__(self, env):
        inner = env.envs[0].unwrapped
        self.env = env
        self.model, self.data = getattr(inner, "model", None), getattr(inner, "data", None)
        self.renderer = self.camera = None
        self.size = (int(getattr(inner, "height", 480) or 480), int(getattr(inner, "width", 480) or 480))

    @property
    def mujoco_task(self) -> bool:
        return self.model is not None and self.data is not None and hasattr(self.model, "nbody")

    def _open(self) -> None:
        import mujoco

        self.model.vis.quality.offsamples = 0  # visual option only: the dynamics do not read it
        height, width = self.size
        self.model.vis.global_.offwidth = max(int(self.model.vis.global_.offwidth), width)
        self.model.vis.global_.offheight = max(int(self.model.vis.global_.offheight), height)
        try:
            self.renderer = mujoco.Renderer(self.model, height=height, width=width)
        except Exception as e:  # GL backends raise assorted types
            raise _render_failed(e) from None
        self.renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
        self.camera = tracking_camera(self.model, self.data)

    def frame(self, lines: list[str] | None = None) -> np.ndarray:
        if not self.mujoco_task:
            rgb = _render(self.env)
        else:
            if self.renderer is None:
                self._open()
            self.renderer.update_scene(self.data, camera=self.camera)
            rgb = self.renderer.render()
        return overlay_text(rgb, lines) if lines else np.asarray(rgb)

    def close(self) -> None:
        if self.renderer is not None:
            self.renderer.close()
            self.renderer = None


def _default_video_path(policy_path: Path) -> Path:
    base = policy_path.parent.parent if policy_path.parent.name == "checkpoints" else policy_path.parent
    return base / "replay.mp4"


def _video_path(video_path: str | Path | None, policy_path: Path) -> Path:
    path = _default_video_path(policy_path) if video_path is None else Path(video_path).expanduser()
    if path.suffix.lower() != ".mp4":
        raise ConfigError(f"video_path must end in .mp4, got {path}")
    return path


# --------------------------------------------------------------------------- robots
def _data_dir(source: str, packaged: str) -> list[Path]:
    """Where a data folder can be: the checkout's top-level ``source`` (next to pyproject.toml), then
    the copy a wheel install carries as package data (``robo_ppo/<packaged>``)."""
    here = Path(__file__).resolve().parent
    candidates = [here / packaged]
    if (here.parent / "pyproject.toml").is_file():
        candidates.insert(0, here.parent / source)
    return candidates


def deploy_kit_dir() -> Path:
    """Folder of the deployment kit: the checkout's ``export/``, else the wheel's ``robo_ppo/deploy_kit``."""
    candidates = _data_dir("export", "deploy_kit")
    for candidate in candidates:
        if (candidate / "deploy.py").is_file():
            return candidate
    raise ConfigError(f"the deployment kit (deploy.py) is not in {' nor in '.join(map(str, candidates))}; "
                      "reinstall robo_ppo")


def shipped_policies() -> dict[str, Path]:
    """The trained controllers robo_ppo ships, ``{name: policy.onnx}``: ``policies/<name>/policy.onnx`` in
    the checkout, else ``robo_ppo/policies`` in a wheel install. ``robo-ppo-replay policy=<name>`` runs one."""
    for candidate in _data_dir("policies", "policies"):
        found = {p.parent.name: p for p in sorted(candidate.glob("*/policy.onnx"))}
        if found:
            return found
    return {}


@functools.cache
def load_deploy_kit(name: str = "deploy") -> ModuleType:
    """Import ``<deploy kit>/<name>.py`` (it imports its siblings, e.g. ``onnx_controller``, itself)."""
    path = deploy_kit_dir() / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"robo_ppo_deploy_kit_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[spec.name]
        raise
    return module


def _robot_schedule(kit: ModuleType, schedule: Any, segments: int, segment_seconds: float, seed: int,
                    robot: dict[str, Any]) -> list[tuple[float, ...]]:
    commands = list(robot.get("commands") or ())
    if OmegaConf.is_config(schedule):
        schedule = OmegaConf.to_container(schedule)
    if schedule == "default":
        return kit.default_schedule(commands)
    if schedule == "random":
        if segments < 1 or not segment_seconds > 0:
            raise ConfigError(f"schedule=random needs segments >= 1 and segment_seconds > 0, got {segments} "
                              f"and {segment_seconds}")
        return kit.random_schedule(segments, segment_seconds, seed, robot.get("command_ranges"), commands=commands)
    try:
        out = [tuple(float(v) for v in seg) for seg in schedule]
    except (TypeError, ValueError):
        out = []
    if not out or any(len(seg) != 1 + len(commands) or not seg[0] > 0 for seg in out):
        raise ConfigError(f"schedule must be default, random or a list of [seconds > 0, {', '.join(commands)}], "
                          f"got {schedule!r}")
    return out


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
    """A robot policy in the deployment kit's robot-side loop (see the module docstring)."""
    from robo_ppo.export import export_checkpoint

    if not deterministic:
        raise ConfigError(f"{path.name}: a robot policy replays as its deterministic ONNX controller; "
                          "use deterministic=true")
    if env_id is not None and env_id != task_id:
        raise ConfigError(f"{path.name} (trained on {task_id}) does not match the task {env_id}; omit env_id")
    kit = load_deploy_kit("deploy")
    try:
        kit.check_robot(robot, path.name)
        plan = _robot_schedule(kit, schedule, segments, segment_seconds, seed, robot)
    except kit.DeployError as e:
        raise ConfigError(str(e)) from None
    name = str(robot.get("name") or "robot")
    out = _video_path(video_path, path) if video else None
    with tempfile.TemporaryDirectory(prefix="robo_ppo_replay_") as tmp:
        onnx_path = path if kind == "onnx" else export_checkpoint(state["path"], Path(tmp) / "policy.onnx")["path"]
        tmp_video = None
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp_video = out.parent / f".tmp_{os.getpid()}_{out.name}"
        try:
            result = kit.run(onnx_path, plan, seed=seed, video=tmp_video,
                             on_frame=lambda frame, info: overlay_text(frame, _robot_frame_lines(info)))
            if tmp_video is not None:
                _publish(tmp_video, out)
        except (kit.DeployError, kit.ControllerError) as e:
            raise ConfigError(str(e)) from None
        finally:
            if tmp_video is not None:
                tmp_video.unlink(missing_ok=True)
    result.update({"task_id": task_id, "source": kind, "policy": str(path), "robot": name,
                   "schedule": [list(seg) for seg in plan], "video": str(out) if out is not None else None})
    if print_table:
        print(format_table(result))
    return result


# --------------------------------------------------------------------------- replay
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
        os.environ.setdefault("MUJOCO_GL", "egl")  # read at the first frame; egl works headless (software Mesa)
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
    if robot:
        return _replay_robot(Path(state["path"]) if state else p, "checkpoint" if state else "onnx", robot, task_id,
                             state, seed=seed, deterministic=deterministic, env_id=env_id, schedule=schedule,
                             segments=segments, segment_seconds=segment_seconds, video=video,
                             video_path=video_path, print_table=print_table)
    loaded = _onnx_policy(p, deterministic, meta) if meta is not None else _checkpoint_policy(p, deterministic, state)
    return _replay_episodes(loaded, episodes=episodes, seed=seed, env_id=env_id,
                            max_episode_steps=max_episode_steps, video=video, video_path=video_path,
                            video_episodes=video_episodes, print_table=print_table)


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
        print(format_table(result))
    return result


def format_table(result: dict[str, Any]) -> str:
    """Episode table: seed, return, length per episode, then mean +- std (robot policies: a header line,
    then the deployment kit's per-segment table)."""
    if result.get("robot"):
        lines = [f"{result['task_id']} | {result['source']} {Path(result['policy']).name} | robot "
                 f"{result['robot']}, {len(result['segments'])} command segments",
                 load_deploy_kit("deploy").format_table(result)]
    else:
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


def _json_safe(x: Any) -> Any:
    """NaN/inf -> None, recursively (strict JSON)."""
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_json_safe(v) for v in x]
    return None if isinstance(x, float) and not math.isfinite(x) else x


# --------------------------------------------------------------------------- CLI
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
        Path(cfg.summary_json).write_text(json.dumps(_json_safe(result), indent=2))
    sys.stdout.flush()


def main() -> None:
    from robo_ppo.hydra_utils import run_app

    register_replay_config()
    run_app(_task, "replay")


if __name__ == "__main__":
    main()
