"""Mirror symmetry of a robot and of its policy's input and output, derived from the model.

A legged robot is symmetric about its base's sagittal (x-z) plane. Reflect the robot and its world
across that plane and every state maps to a mirrored state: the left leg does what the right leg did,
a turn to the left becomes a turn to the right. A policy that respects the symmetry acts on a mirrored
observation with the mirrored action; one that does not drifts or turns one way at a zero command.
Yu, Turk and Liu 2018 ("Learning Symmetric and Low-Energy Locomotion", eq. 4) add a loss that pulls the
policy toward ``pi(mirror_obs(o)) = mirror_action(pi(o))``; ``robo_ppo.algo.losses.symmetry_loss`` is it.

Both maps are a permutation with signs (``Mirror``), derived here, not declared per robot:

* the joints (``joint_mirror``): at the init keyframe, each joint's anchor and axis in the base frame;
  the mirror of joint ``j`` is the joint whose anchor is ``j``'s reflected (``(x, -y, z)``) and whose
  axis is ``j``'s reflected axis up to sign. An axis is a pseudovector: it reflects as ``(-x, y, -z)``,
  and the joint angle's sign is whether the two agree (a hip roll: -1, a knee: +1, a waist yaw: its own
  mirror with -1);
* the feet (``foot_mirror``): the foot site at the reflected position;
* the observation (``observation_mirror``): each term as its kind (``rules.MIRROR_KINDS``, declared with
  the term in ``rules.OBSERVATIONS``), the history frame by frame.

A model that is not symmetric (no joint or foot at a reflected place, an IMU frame turned out of the
plane) is refused with the part that breaks it. An IMU off the plane is allowed: its angular velocity
and gravity mirror exactly, its linear velocity only up to ``omega x 2 y`` (the Go1's sits 6.7 cm right
of the plane: 0.13 m/s per rad/s of roll or yaw rate), so the loss then holds the policy to a nearly
mirrored state (``imu_offset`` says how far).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import mujoco
import numpy as np
import torch

from robo_ppo.deploy_kit import rules
from robo_ppo.errors import ConfigError

REFLECT_VECTOR = np.array([1.0, -1.0, 1.0])
"""A vector (position, linear velocity, gravity) reflected across the x-z plane."""
REFLECT_PSEUDOVECTOR = np.array([-1.0, 1.0, -1.0])
"""A pseudovector (angular velocity, rotation axis) reflected across the x-z plane: ``det(M) M w``."""
COMMAND_SIGNS = np.array([1.0, -1.0, -1.0])
"""(vx, vy, yaw rate) reflected: sideways and turning change sign."""
TOLERANCE = 0.005
"""m (anchors, feet) and unit-axis distance within which two parts count as each other's mirror."""


SYMMETRY_KEYS = "algo.symmetry_coef, algo.symmetry_augmentation"
"""The config keys that use the mirror maps, as error messages name them."""


@dataclass(frozen=True)
class Mirror:
    """A reflection of a vector as a signed permutation: ``mirror(x)[..., i] = sign[i] * x[..., perm[i]]``.

    ``perm`` int ``[n]``, ``sign`` float ``[n]`` (+-1); numpy arrays, or torch tensors after ``to``.
    A reflection is its own inverse: ``mirror(mirror(x)) == x``.
    """

    perm: Any
    sign: Any

    def __call__(self, x):
        return x[..., self.perm] * self.sign

    def to(self, device: torch.device | str, dtype: torch.dtype = torch.float32) -> Mirror:
        """The same map as torch tensors on ``device`` (``sign`` in ``dtype``)."""
        return Mirror(torch.as_tensor(np.asarray(self.perm), dtype=torch.long, device=device),
                      torch.as_tensor(np.asarray(self.sign), dtype=dtype, device=device))

    @staticmethod
    def concat(parts: Sequence[Mirror]) -> Mirror:
        """The map of the concatenated vectors (each part's indices shifted by the sizes before it)."""
        perms, offset = [], 0
        for part in parts:
            perms.append(np.asarray(part.perm) + offset)
            offset += len(part.perm)
        return Mirror(np.concatenate(perms).astype(np.int64), np.concatenate([np.asarray(p.sign, float) for p in parts]))


def _base_frame(robot, data: mujoco.MjData) -> tuple[np.ndarray, np.ndarray]:
    """The base body's position and rotation (``[3]``, ``[3, 3]``, world) at the init keyframe."""
    data.qpos[:] = robot.init_qpos
    mujoco.mj_kinematics(robot.model, data)
    return data.xpos[robot.base_body].copy(), data.xmat[robot.base_body].reshape(3, 3).copy()


def joint_mirror(robot) -> Mirror:
    """The mirror map of the robot's joints (action order), from the model at its init keyframe.

    Args:
        robot: a ``robo_ppo.robots.model.RobotModel``.

    Returns:
        ``Mirror`` over the ``J`` joints: joint ``i`` of the mirrored robot is ``sign[i]`` times joint
        ``perm[i]`` of the robot (angle, velocity, action alike).

    Raises:
        ConfigError: a joint has no mirror (no joint at its reflected anchor with its reflected axis),
            or the map is not a reflection (two joints mirror onto one).
    """
    m = robot.model
    data = mujoco.MjData(m)
    origin, rot = _base_frame(robot, data)
    jnt = np.array([m.dof_jntid[d] for d in robot.dof_adr])
    anchor = (data.xanchor[jnt] - origin) @ rot            # [J, 3] in the base frame
    axis = data.xaxis[jnt] @ rot
    perm, sign = np.zeros(len(jnt), np.int64), np.zeros(len(jnt))
    names = robot.desc.joint_names
    for i in range(len(jnt)):
        reflected = axis[i] * REFLECT_PSEUDOVECTOR
        along = axis @ reflected                               # +-1 for a joint on the reflected axis
        miss = np.linalg.norm(anchor - anchor[i] * REFLECT_VECTOR, axis=1) + (1.0 - np.abs(along))
        k = int(miss.argmin())
        if miss[k] > TOLERANCE:
            raise ConfigError(f"robot {robot.desc.name}: joint {names[i]!r} has no mirror image across the base's "
                              f"x-z plane (nearest: {names[k]!r}, {miss[k]:.3f} off); the symmetry terms "
                              f"({SYMMETRY_KEYS}) need a left-right symmetric robot")
        perm[i], sign[i] = k, np.sign(along[k])
    _check_involution(robot, perm, sign, "joint")
    return Mirror(perm, sign)


def foot_mirror(robot) -> np.ndarray:
    """int ``[F]``: foot ``i`` of the mirrored robot is foot ``perm[i]`` (the site at the reflected
    position at the init keyframe).

    Raises:
        ConfigError: a foot has no foot at its reflected position.
    """
    data = mujoco.MjData(robot.model)
    origin, rot = _base_frame(robot, data)
    feet = (data.site_xpos[robot.feet_sites] - origin) @ rot
    perm = np.zeros(len(feet), np.int64)
    for i, f in enumerate(feet):
        miss = np.linalg.norm(feet - f * REFLECT_VECTOR, axis=1)
        perm[i] = k = int(miss.argmin())
        if miss[k] > TOLERANCE:
            raise ConfigError(f"robot {robot.desc.name}: foot {robot.desc.feet[i]!r} has no mirror image across "
                              f"the base's x-z plane ({miss[k]:.3f} m off)")
    _check_involution(robot, perm, np.ones(len(perm)), "foot")
    return perm


def _check_involution(robot, perm: np.ndarray, sign: np.ndarray, what: str) -> None:
    if not (np.array_equal(perm[perm], np.arange(len(perm))) and np.all(sign[perm] == sign)):
        raise ConfigError(f"robot {robot.desc.name}: the {what} mirror map {perm.tolist()} is not a reflection "
                          "(two parts mirror onto one); the robot is not left-right symmetric")


def imu_offset(robot) -> float:
    """m: the IMU site's distance from the base's x-z plane (0 for an IMU on the plane).

    Raises:
        ConfigError: the IMU frame's x and z axes are not in the plane (its y axis not normal to it):
            its sensors reflect as ``rules.MIRROR_KINDS`` say only in such a frame.
    """
    data = mujoco.MjData(robot.model)
    origin, rot = _base_frame(robot, data)
    imu = rot.T @ data.site_xmat[robot.imu_site].reshape(3, 3)   # IMU axes in the base frame (columns)
    if abs(abs(imu[1, 1]) - 1.0) > 1e-6:
        raise ConfigError(f"robot {robot.desc.name}: the IMU site {robot.desc.imu_site!r} is turned out of the "
                          "base's x-z plane; its sensors cannot be mirrored "
                          f"({SYMMETRY_KEYS})")
    return float(abs((data.site_xpos[robot.imu_site] - origin) @ rot[:, 1]))


def term_mirror(entry: Mapping[str, Any], joints: Mirror, feet: np.ndarray) -> Mirror:
    """The mirror map of one observation term (a layout entry ``{name, fn, size[, sensor]}``), from its
    kind (``rules.OBSERVATIONS[fn].mirror``).

    Raises:
        ConfigError: the term has no mirror kind (a privileged term, a quaternion) or the wrong size.
    """
    term = rules.OBSERVATIONS.get(entry["fn"])
    kind = term.mirror(entry) if term is not None else None
    size = int(entry["size"])
    fixed = {"vector": REFLECT_VECTOR, "pseudovector": REFLECT_PSEUDOVECTOR, "command": COMMAND_SIGNS}
    if kind in fixed and size == 3:
        return Mirror(np.arange(3), fixed[kind])
    if kind == "joints" and size == len(joints.perm):
        return joints
    if kind == "gait_clock" and size == 2 * len(feet):
        return Mirror(np.concatenate([feet, feet + len(feet)]), np.ones(size))
    raise ConfigError(f"observation term {entry['name']!r} (fn {entry['fn']!r}, size {size}) has no mirror "
                      f"{'kind' if kind is None else f'of kind {kind!r} at this size'}: the symmetry terms "
                      f"({SYMMETRY_KEYS}) mirror only robot-side terms of rules.MIRROR_KINDS")


def observation_mirror(robot, layout: Sequence[Mapping[str, Any]], joints: Mirror, history_length: int = 1) -> Mirror:
    """The mirror map of the policy input: the layout's terms in order, ``history_length`` frames of
    them (``rules.history_input``: each frame mirrors alike).

    Args:
        robot: the ``RobotModel``.
        layout: the actor's observation layout (``Joystick.layout``: entries with ``fn`` and ``size``).
        joints: the robot's ``joint_mirror`` (the joint terms' map, and the actions').
        history_length: frames in the policy input.

    Raises:
        ConfigError: see ``foot_mirror``, ``term_mirror``, ``imu_offset``.
    """
    imu_offset(robot)
    feet = foot_mirror(robot)
    frame = Mirror.concat([term_mirror(e, joints, feet) for e in layout])
    return Mirror.concat([frame] * int(history_length))


__all__ = ["Mirror", "joint_mirror", "foot_mirror", "imu_offset", "term_mirror", "observation_mirror"]
