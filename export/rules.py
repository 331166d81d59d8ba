"""Every rule the robot computer runs, written once for numpy (this kit) and torch (training).

Training (``robo_ppo/tasks/``, batched torch tensors ``[N, ...]``) and the
deployment kit (``robot_controller.py``, one robot, numpy ``[...]``) import
these functions; neither has a copy. Each function takes arrays with any
leading batch shape and works on the last axis; it computes in the caller's
array library and dtype (torch float32 in training, numpy float64 on the
robot), chosen by :func:`array_namespace`. Only numpy is imported here.

The rules:

* observation terms (:data:`OBSERVATIONS`: each value and the inputs it reads) and how a layout of them becomes
  one frame of the policy input (:func:`observation`): ``scale * value`` per entry, in order; and the
  observation history, the last ``length`` frames newest first (:func:`start_history`,
  :func:`push_history`, :func:`history_input`);
* projected gravity (:func:`projected_gravity`), the heading and the yaw rate that holds one
  (:func:`heading`, :func:`heading_command`), and the gait clock
  (:func:`gait_phase`, :func:`gait_clock`);
* the action mapping (:func:`clip_action`, :func:`joint_targets`);
* the PD law (:func:`pd_torques`; :func:`pd_actuator` gives the MuJoCo
  actuator parameters that compute the same law inside the physics step);
* the fall condition (:func:`fallen`).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

Array = Any
"""A numpy array or a torch tensor."""


def array_namespace(*arrays: Array):
    """The array library of ``arrays``: ``torch`` if any is a torch tensor, else ``numpy``
    (torch is never imported here: a tensor means the caller imported it)."""
    for a in arrays:
        if type(a).__module__.split(".")[0] == "torch":
            return sys.modules["torch"]
    return np


def _concat(xs: Sequence[Array]) -> Array:
    xp = array_namespace(*xs)
    return np.concatenate(xs, -1) if xp is np else xp.cat(list(xs), -1)


# ---------------------------------------------------------------- orientation
def projected_gravity(quat: Array) -> Array:
    """Unit gravity direction in the body frame, ``R^T [0, 0, -1] = -R[2, :]``, from a (w, x, y, z)
    orientation quaternion ``[..., 4]`` (normalized first); returns ``[..., 3]``.

    ``R`` is the body-to-world rotation of the quaternion (e.g. Shuster 1993, eq. 97, third row).

    Raises:
        ValueError: the last axis is not 4."""
    if quat.shape[-1] != 4:
        raise ValueError(f"an orientation is a (w, x, y, z) quaternion [..., 4], got shape {tuple(quat.shape)}")
    xp = array_namespace(quat)
    norm = np.linalg.norm(quat, axis=-1, keepdims=True) if xp is np else quat.norm(dim=-1, keepdim=True)
    q = quat / norm
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    return -xp.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1)


def heading(quat: Array) -> Array:
    """The base's heading (rad, in ``(-pi, pi]``; 0 along the world's +x axis, positive counter-clockwise):
    the yaw of a (w, x, y, z) orientation quaternion ``[..., 4]``, ``atan2(2 (w z + x y), 1 - 2 (y^2 + z^2))``
    (the z-y-x Euler angles' first, e.g. Diebel 2006, eq. 290); returns ``[...]``."""
    xp = array_namespace(quat)
    w, x, y, z = quat[..., 0], quat[..., 1], quat[..., 2], quat[..., 3]
    return xp.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))


def wrap_angle(angle: Array) -> Array:
    """An angle (rad) taken to ``(-pi, pi]``: ``atan2(sin a, cos a)``, the same angle the shorter way round."""
    xp = array_namespace(angle)
    return xp.arctan2(xp.sin(angle), xp.cos(angle))


def heading_command(heading_now: Array, target: Array, stiffness: float, low: Array, high: Array) -> Array:
    """The yaw-rate command (rad/s) that turns the base toward a ``target`` heading:
    ``clip(stiffness * wrap(target - heading_now), low, high)``, ``wrap`` taking the error to ``(-pi, pi]``
    (the shorter way round); ``stiffness`` in (rad/s)/rad, ``[low, high]`` the yaw-rate command's range.
    The heading command of legged_gym (Rudin et al. 2021) and Isaac Lab's velocity command
    (``heading_control_stiffness``); arguments broadcast."""
    xp = array_namespace(heading_now, target)
    return xp.clip(stiffness * wrap_angle(target - heading_now), low, high)


def ramp_command(command: Array, target: Array, rate_limit: Array, dt: float) -> Array:
    """The command one control step later when it follows ``target`` at most ``rate_limit`` per second:
    ``command + clip(target - command, -rate_limit dt, rate_limit dt)`` (m/s^2 for vx, vy; rad/s^2 for the
    yaw rate; ``dt`` the control step, s). A joystick's acceleration limit: a full-range cut becomes a ramp
    the robot can follow (training's ``velocity_command`` ``rate_limit``, the controller's
    ``command_rate_limit``); arguments broadcast."""
    xp = array_namespace(command, target, rate_limit)
    step = rate_limit * dt
    return command + xp.clip(target - command, -step, step)


# ------------------------------------------------------------------ gait clock
def gait_phase(time_s: Array, frequency_hz: Array, phase_offsets: Array, start_cycles: Array = 0.0) -> Array:
    """Each foot's gait phase (rad, in ``[-pi, pi)``): ``2 pi wrap(start + offset_f + f t)``, ``wrap``
    taking cycles to ``[-0.5, 0.5)``; ``t`` the time since reset (s), ``f`` the frequency (Hz),
    offsets and start in cycles. Arguments broadcast (training: ``[N, 1]`` times against ``[1, F]``
    offsets; the robot: a scalar time and ``[F]`` offsets). 0 is mid-swing, -pi touch-down (after
    MuJoCo Playground's biped gait clock, Zakka et al. 2025)."""
    xp = array_namespace(time_s, frequency_hz, phase_offsets, start_cycles)
    cycles = start_cycles + phase_offsets + frequency_hz * time_s
    return 2 * math.pi * (xp.remainder(cycles + 0.5, 1.0) - 0.5)


def gait_clock(phase: Array) -> Array:
    """The gait clock as the policy sees it: ``[cos(phase_f) for f] + [sin(phase_f) for f]``,
    ``[..., F] -> [..., 2F]``."""
    xp = array_namespace(phase)
    return _concat([xp.cos(phase), xp.sin(phase)])


# ----------------------------------------------------------------- observation
@dataclass(frozen=True)
class ObsTerm:
    """A robot-side observation term: its value and the measured inputs it reads."""

    value: Callable[[Mapping[str, Array], Mapping[str, Any]], Array]
    """``(inputs, entry) -> [..., size]``."""
    reads: Callable[[Mapping[str, Any]], tuple[str, ...]] = lambda entry: ()
    """``entry -> names``: the measured inputs (sensor roles, ``joint_pos``, ``joint_vel``) a robot's
    driver must supply for the term; the controller keeps ``last_action``, ``command`` and the clock."""
    sensor: str | None = None
    """The sensor role the term reads when its entry names none (``entry["sensor"]``)."""
    mirror: Callable[[Mapping[str, Any]], str | None] = lambda entry: None
    """``entry -> kind``: how the term's value changes when the robot and its world are reflected across
    the base's sagittal (x-z) plane, one of ``MIRROR_KINDS``; None: not known (training's symmetry loss
    refuses the term). Training only (``robo_ppo/robots/symmetry.py``); the robot-side controller never
    mirrors."""


MIRROR_KINDS = ("vector", "pseudovector", "command", "joints", "gait_clock")
"""How a term mirrors: ``vector`` a 3-vector in the base (or world) frame, ``(x, -y, z)``; ``pseudovector``
an angular velocity, ``(-x, y, -z)`` (a reflection flips the sense of rotation); ``command`` (vx, vy, yaw
rate), ``(vx, -vy, -yaw)``; ``joints`` one value per joint, the mirrored joint's value times the sign of the
mirrored axis; ``gait_clock`` ``gait_clock``'s cos and sin per foot, the mirrored foot's."""

SENSOR_MIRROR = {"gyro": "pseudovector", "global_angvel": "pseudovector", "local_linvel": "vector",
                 "global_linvel": "vector", "accelerometer": "vector", "upvector": "vector"}
"""Sensor role -> its ``MIRROR_KINDS`` entry (a role not here cannot be mirrored, e.g. a quaternion)."""


def _sensor_term(transform: Callable[[Array], Array] = lambda x: x, default: str | None = None,
                 mirror: str | None = None) -> ObsTerm:
    """A term of one sensor role: ``transform(inputs[entry["sensor"] or default])``; it mirrors as
    ``mirror``, else as its role (``SENSOR_MIRROR``)."""
    return ObsTerm(lambda inputs, e: transform(inputs[e.get("sensor") or default]),
                   lambda e: (e.get("sensor") or default,), default,
                   lambda e: mirror or SENSOR_MIRROR.get(e.get("sensor") or default))


OBSERVATIONS: dict[str, ObsTerm] = {
    # a named sensor role of the robot, e.g. the gyro (rad/s) or the velocity estimate (m/s)
    "sensor": _sensor_term(),
    # unit gravity in the IMU frame, from its orientation quaternion (role "orientation" by default)
    "projected_gravity": _sensor_term(projected_gravity, "orientation", "vector"),
    # encoder angles minus the default pose (rad)
    "joint_pos_rel": ObsTerm(lambda inputs, e: inputs["joint_pos"] - inputs["default_pose"], lambda e: ("joint_pos",),
                             mirror=lambda e: "joints"),
    # encoder velocities (rad/s)
    "joint_vel": ObsTerm(lambda inputs, e: inputs["joint_vel"], lambda e: ("joint_vel",), mirror=lambda e: "joints"),
    # the previous policy action (clipped)
    "last_action": ObsTerm(lambda inputs, e: inputs["last_action"], mirror=lambda e: "joints"),
    # the command (vx, vy m/s, yaw rate rad/s)
    "command": ObsTerm(lambda inputs, e: inputs["command"], mirror=lambda e: "command"),
    # cos, sin of each foot's gait phase
    "gait_phase": ObsTerm(lambda inputs, e: gait_clock(inputs["gait_phase"]), mirror=lambda e: "gait_clock"),
}
"""Observation term ``fn`` -> ``ObsTerm``: every term a robot can compute itself (its sensors, encoders,
own actions, command and clock), each defined here once. ``inputs`` maps names to arrays: sensor roles
(``gyro``, ``local_linvel``, ``orientation``, ...), ``joint_pos`` and ``joint_vel`` (encoders, action
order), ``last_action``, ``command``, ``gait_phase`` and the constant ``default_pose``; ``entry`` is the
term's layout entry (``sensor``: the role it reads). A term's size is its value's last axis."""


def observation_values(inputs: Mapping[str, Array], layout: Sequence[Mapping[str, Any]]) -> list[Array]:
    """Each layout entry's raw value ``OBSERVATIONS[entry["fn"]](inputs, entry)``, in layout order."""
    return [OBSERVATIONS[entry["fn"]].value(inputs, entry) for entry in layout]


def assemble(values: Sequence[Array], layout: Sequence[Mapping[str, Any]]) -> Array:
    """The policy input: ``concat(scale_i * value_i)`` over the layout, ``[..., obs_dim]``."""
    return _concat([entry.get("scale", 1.0) * v for entry, v in zip(layout, values, strict=True)])


def observation(inputs: Mapping[str, Array], layout: Sequence[Mapping[str, Any]]) -> Array:
    """``assemble(observation_values(inputs, layout), layout)``: the observation of a robot-side layout
    (``obs_layout`` of the metadata; training adds noise between the two steps)."""
    return assemble(observation_values(inputs, layout), layout)


HISTORY_ORDER = "newest_first"
"""The order of the frames in the policy input (the metadata's ``obs_history.order``): frame 0 is the
current observation, frame ``k`` the one ``k`` control steps before."""


def start_history(frame: Array, length: int) -> Array:
    """The history at an episode's first step: ``frame`` ``[..., F]`` repeated, ``[..., length, F]`` (no
    earlier frame exists; repeating the first is what a robot can do at start-up)."""
    return array_namespace(frame).stack([frame] * int(length), -2)


def push_history(history: Array, frame: Array) -> Array:
    """The history one step later: ``frame`` ``[..., F]`` first, then the newest ``length - 1`` frames of
    ``history`` ``[..., length, F]`` (the oldest drops out)."""
    return array_namespace(history, frame).concatenate([frame[..., None, :], history[..., :-1, :]], -2)


def history_input(history: Array) -> Array:
    """The policy input of a history ``[..., length, F]``: its frames concatenated in order,
    ``[..., length * F]`` (``length`` 1: the frame itself)."""
    return history.reshape(*history.shape[:-2], history.shape[-2] * history.shape[-1])


# ------------------------------------------------------------------- actions
def clip_action(action: Array, low: float = -1.0, high: float = 1.0) -> Array:
    """The policy output clipped to the action range (``action_clip``)."""
    xp = array_namespace(action)
    return xp.clip(action, low, high)


def joint_targets(action: Array, default_pose: Array, action_scale: float) -> Array:
    """Joint position targets ``q* = default_pose + action_scale * a`` (rad) of a clipped action
    ``[..., J]``; the PD law clamps them to the target range (:func:`pd_torques`)."""
    return default_pose + action_scale * action


# -------------------------------------------------------------------- PD law
def pd_torques(target: Array, q: Array, qd: Array, kp: Array, kd: Array, torque_limits: Array,
               target_low: Array | None = None, target_high: Array | None = None) -> Array:
    """Joint torques (N m) ``clip(kp (clip(q*, lo, hi) - q) - kd qd, -limit, limit)``, ``[..., J]``;
    run at the servo (physics) rate while ``q*`` changes at the control rate. ``kp`` N m/rad, ``kd``
    N m s/rad, ``torque_limits`` N m; ``target_low/high`` (rad) the target range (None: unlimited).

    In training MuJoCo computes this law inside each physics step: the actuator of
    :func:`pd_actuator` (``ctrl`` = ``q*``, clamped to ``ctrlrange``; force ``kp ctrl - kp q - kd qd``;
    clamped to ``forcerange``), as the MuJoCo documentation defines affine actuators."""
    xp = array_namespace(target, q, qd)
    if target_low is not None:
        target = xp.clip(target, target_low, target_high)
    return xp.clip(kp * (target - q) - kd * qd, -torque_limits, torque_limits)


def pd_actuator(kp: float, kd: float, torque_limit: float, nprm: int = 10) -> dict[str, Any]:
    """The MuJoCo affine actuator that computes :func:`pd_torques` for one joint: ``gainprm``,
    ``biasprm`` (``force = kp ctrl - kp q - kd qd``) and ``forcerange`` (``+-torque_limit``)."""
    gain, bias = np.zeros(nprm), np.zeros(nprm)
    gain[0], bias[1], bias[2] = kp, -kp, -kd
    return {"gainprm": gain, "biasprm": bias, "forcerange": [-torque_limit, torque_limit]}


# --------------------------------------------------------------------- fall
def fallen(gravity: Array, max_tilt_cos: float, base_height: Array | None = None,
           min_base_height: float = 0.0) -> Array:
    """True where the robot has fallen: its up axis's z component (``-gravity_z`` of
    :func:`projected_gravity`) below ``max_tilt_cos``, or (when ``min_base_height > 0`` and the height
    is known) the base below ``min_base_height`` m. ``gravity [..., 3]`` -> bool ``[...]``."""
    out = -gravity[..., 2] < max_tilt_cos
    if min_base_height > 0 and base_height is not None:
        out = out | (base_height < min_base_height)
    return out


__all__ = ["OBSERVATIONS", "ObsTerm", "array_namespace", "projected_gravity", "heading", "heading_command",
           "ramp_command", "gait_phase", "gait_clock",
           "observation_values", "assemble", "observation", "clip_action", "joint_targets", "pd_torques",
           "pd_actuator", "fallen"]
