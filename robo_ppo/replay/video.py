"""Video of a replay: the MP4 writer (temp file, renamed when done), the tracking camera that follows
a MuJoCo robot's root body, the text overlay, the per-frame renderer of a gymnasium VecEnv, and where
the MP4 goes."""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path

import numpy as np

from robo_ppo.errors import ConfigError


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
