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

A model that is not symmetric (no joint or foot at a reflected place, a sensor frame turned out of the
plane) is refused with the part that breaks it. A sensor off the plane (the Go1's IMU sits 6.7 cm right of
it) reads the same angular velocity and gravity as one on it, but the velocity of its own point: the
mirror of such a linear velocity is not a signed permutation but ``v' = M v + 2 (M* omega) x d``, with
``d`` the sensor's offset from the plane and ``omega`` the gyro of the same frame (``velocity_coupling``:
a ``Mirror.mix`` block; without a gyro term it is refused rather than approximated).
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
    """A reflection of a vector: a signed permutation plus linear mixing blocks,
    ``mirror(x)[..., i] = sign[i] * x[..., perm[i]]``, then ``mirror(x)[..., rows] += x[..., cols] @ matrix.T``
    for each ``(rows, cols, matrix)`` of ``mix`` (int ``[r]``, int ``[c]``, float ``[r, c]``; the
    velocity of a sensor off the symmetry plane, ``velocity_coupling``).

    ``perm`` int ``[n]``, ``sign`` float ``[n]`` (+-1); numpy arrays, or torch tensors after ``to``.
    A reflection is its own inverse: ``mirror(mirror(x)) == x`` (to rounding with ``mix``).
    """

    perm: Any
    sign: Any
    mix: tuple = ()

    def __call__(self, x):
        y = x[..., self.perm] * self.sign
        for rows, cols, matrix in self.mix:
            y[..., rows] += x[..., cols] @ matrix.T
        return y

    def to(self, device: torch.device | str, dtype: torch.dtype = torch.float32) -> Mirror:
        """The same map as torch tensors on ``device`` (``sign`` and the mixing matrices in ``dtype``)."""
        index = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.long, device=device)  # noqa: E731
        value = lambda a: torch.as_tensor(np.asarray(a), dtype=dtype, device=device)       # noqa: E731
        return Mirror(index(self.perm), value(self.sign),
                      tuple((index(rows), index(cols), value(m)) for rows, cols, m in self.mix))

    @staticmethod
    def concat(parts: Sequence[Mirror]) -> Mirror:
        """The map of the concatenated vectors (each part's indices shifted by the sizes before it)."""
        perms, mix, offset = [], [], 0
        for part in parts:
            perms.append(np.asarray(part.perm) + offset)
            mix += [(np.asarray(rows) + offset, np.asarray(cols) + offset, m) for rows, cols, m in part.mix]
            offset += len(part.perm)
        return Mirror(np.concatenate(perms).astype(np.int64),
                      np.concatenate([np.asarray(p.sign, float) for p in parts]), tuple(mix))


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


POINT_ROLES = ("local_linvel", "global_linvel", "accelerometer")
"""Sensor roles whose value depends on where the sensor sits: the velocity or acceleration of its point."""


def sensor_offset(robot, role: str) -> np.ndarray:
    """``[3]`` m: the offset from the base's x-z plane of the site that the sensor of ``role`` reads, in
    that site's frame (zeros for a sensor on the plane), at the init keyframe.

    Raises:
        ConfigError: the site frame's x and z axes are not in the plane (its y axis not normal to it):
            its values reflect as ``rules.MIRROR_KINDS`` say only in such a frame.
    """
    m = robot.model
    name = robot.sensor_name(role)
    sensor = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SENSOR, name)
    if m.sensor_objtype[sensor] != mujoco.mjtObj.mjOBJ_SITE:
        return np.zeros(3)      # a frame-free sensor (e.g. a subtree's): nothing to place
    site = int(m.sensor_objid[sensor])
    data = mujoco.MjData(m)
    origin, rot = _base_frame(robot, data)
    frame = data.site_xmat[site].reshape(3, 3)                   # the site's axes in the world (columns)
    if abs(abs((rot.T @ frame)[1, 1]) - 1.0) > 1e-6:
        raise ConfigError(f"robot {robot.desc.name}: sensor {name!r} (role {role}) reads a site turned out of "
                          f"the base's x-z plane; its values cannot be mirrored ({SYMMETRY_KEYS})")
    normal = rot[:, 1]
    return frame.T @ (normal * float((data.site_xpos[site] - origin) @ normal))


def _skew(d: np.ndarray) -> np.ndarray:
    """``[3, 3]`` with ``_skew(d) @ w == np.cross(d, w)``."""
    return np.array([[0.0, -d[2], d[1]], [d[2], 0.0, -d[0]], [-d[1], d[0], 0.0]])


def velocity_coupling(robot, layout: Sequence[Mapping[str, Any]]) -> tuple:
    """The ``Mirror.mix`` blocks of one observation frame: a linear velocity measured at a point ``d`` off
    the base's plane.

    The sensor reads ``v = v_p + omega x d`` (``v_p`` the velocity of the point on the plane). In the
    mirrored state the plane point moves with ``M v_p`` and the body turns with ``M* omega`` (``M`` the
    reflection, ``M* = -M`` for a pseudovector), and the sensor still sits at ``d``:
    ``v' = M v_p + (M* omega) x d = M v + 2 (M* omega) x d`` (``M (a x b) = (M* a) x (M b)``, ``M d = -d``),
    so ``v'`` mixes in ``-2 skew(d) M* omega``, read from the frame's gyro term (same site frame; each
    term's ``scale`` applied). An involution: ``M C + C M* = 0``.

    Raises:
        ConfigError: such a velocity without a gyro term in the same frame; an accelerometer or world-frame
            velocity off the plane (not a linear function of the observation); a sensor the layout reads
            on a site turned out of the plane (``sensor_offset``).
    """
    starts = np.cumsum([0] + [int(e["size"]) for e in layout])
    roles = [rules.OBSERVATIONS[e["fn"]].reads(e) if e["fn"] in rules.OBSERVATIONS else () for e in layout]
    offsets = {r: sensor_offset(robot, r) for rs in roles for r in rs if r in robot.desc.sensors}  # frames checked
    blocks = []
    for i, entry in enumerate(layout):
        role = next((r for r in roles[i] if r in POINT_ROLES), None)
        if role is None or np.linalg.norm(offsets[role]) < 1e-9:
            continue
        d = offsets[role]
        gyro = next((k for k, r in enumerate(roles) if r == ("gyro",) and layout[k]["fn"] == "sensor"), None)
        if role != "local_linvel" or entry["fn"] != "sensor" or gyro is None or \
                not np.allclose(offsets["gyro"], d, atol=1e-9):
            raise ConfigError(f"observation term {entry['name']!r} ({role}) is measured {np.linalg.norm(d):.3f} m "
                              f"off the base's x-z plane: its mirror needs the body's angular velocity at the "
                              f"same site (a `fn: sensor, sensor: gyro` term) and exists only for local_linvel "
                              f"({SYMMETRY_KEYS})")
        coupling = -2.0 * _skew(d) @ np.diag(REFLECT_PSEUDOVECTOR)
        coupling *= entry.get("scale", 1.0) / layout[gyro].get("scale", 1.0)
        blocks.append((np.arange(starts[i], starts[i] + 3), np.arange(starts[gyro], starts[gyro] + 3), coupling))
    return tuple(blocks)


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
        ConfigError: see ``foot_mirror``, ``term_mirror``, ``velocity_coupling``.
    """
    feet = foot_mirror(robot)
    terms = Mirror.concat([term_mirror(e, joints, feet) for e in layout])
    frame = Mirror(terms.perm, terms.sign, velocity_coupling(robot, layout))
    return Mirror.concat([frame] * int(history_length))


__all__ = ["Mirror", "joint_mirror", "foot_mirror", "sensor_offset", "velocity_coupling", "term_mirror",
           "observation_mirror"]
