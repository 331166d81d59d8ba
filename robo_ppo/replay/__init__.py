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

The package, one job per module: ``config`` (schema and CLI), ``dispatch``
(``replay``: which loop runs a policy), ``policy`` (loading and checking it),
``episodes`` (the gymnasium episode loop), ``robot`` (the deployment kit's robot
loop), ``video`` (MP4 writer, tracking camera, overlay), ``kit`` (finding the
deployment kit and the shipped policies). This module re-exports their API.
"""

from robo_ppo.replay.config import ReplayConfig, _task, main, register_replay_config
from robo_ppo.replay.dispatch import format_table, replay
from robo_ppo.replay.kit import deploy_kit_dir, load_deploy_kit, shipped_policies
from robo_ppo.replay.policy import LoadedPolicy, check_compatible, load_policy
from robo_ppo.replay.video import FrameRenderer, overlay_text, robot_root_body, tracking_camera

__all__ = ["FrameRenderer", "LoadedPolicy", "ReplayConfig", "_task", "check_compatible", "deploy_kit_dir",
           "format_table", "load_deploy_kit", "load_policy", "main", "overlay_text", "register_replay_config",
           "replay", "robot_root_body", "shipped_policies", "tracking_camera"]
