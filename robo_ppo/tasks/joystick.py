"""Velocity-command ("joystick") locomotion for any legged robot, batched in torch: a term runner.

The robot tracks a command ``(vx, vy, yaw_rate)`` (m/s, m/s, rad/s, base
frame). The task is written once for every robot and holds no term of its
own: it runs the terms its config declares (``env.task_params``), each a
named function in one place, in the manager style of Isaac Lab and mjlab:

* observations (``obs``, ``privileged_obs``): the robot-side terms are the
  deployment kit's rules (``export/rules.py``, shared with the robot), the
  privileged ones ``tasks/terms.py``; each ``scale * (value + U(-noise, noise)
  * noise_level)``, the asymmetric critic sees the same terms without noise,
  then the privileged ones;
* rewards (``reward_scales``, ``tasks/terms.py``):
  ``max(0, dt * sum_k scale_k term_k)`` (Playground's convention), each scaled
  term reported (``reward/<term>``);
* terminations (``terminations``, ``tasks/terms.py``); the time limit is the engine's;
* events (``events``, ``tasks/events.py``): the initial state, domain
  randomization, the velocity command and pushes, run in the declared order.

On a terrain (``robot.terrain``: ``env.terrain``, docs/terrain.md) every env stands on a patch of
the grid (``terrain_row``, ``terrain_col``, moved by a ``terrain_curriculum`` event): a reset puts
the initial state on that patch's spawn point, at the highest ground within the robot's footprint
(``robot.footprint``) plus the keyframe's base height; heights are measured from the ground
(``base_height``: above the lowest ground within the footprint, the deploy loop's fall rule; foot
heights: above the ground under each foot); an env whose base comes within the footprint of the
terrain's edge is out of bounds (``out_of_bounds``: the env truncates it). Without a terrain none of
this runs and nothing changes.

Actions follow the kit's rules too: the clipped action ``a`` becomes joint
targets ``q* = q0 + action_scale a`` held by the PD law at the physics rate
(``action_latency: 1`` applies the previous step's action). An optional gait
clock (``gait``, for robots that need a stepping rhythm, after Playground's
Berkeley Humanoid) gives each foot a phase (``rules.gait_phase``) with a
frequency drawn per episode; the robot runs the middle of the range. The
sensors a robot needs follow from the terms used: every term is evaluated
once at start-up, and a missing sensor role fails there. The definitions
follow MuJoCo Playground's Go1 joystick (Zakka et al. 2025), written anew.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import torch
from omegaconf import MISSING, OmegaConf

from robo_ppo.deploy_kit import rules
from robo_ppo.deploy_kit.robot_metadata import Fall, Gait, ModelSource, ObsHistory, RobotMetadata
from robo_ppo.deploy_kit.terrain import _disc
from robo_ppo.errors import ConfigError
from robo_ppo.robots.model import RobotModel
from robo_ppo.robots.physics import Physics
from robo_ppo.tasks.events import COMMANDS, EVENT_FUNCTIONS, ResetState
from robo_ppo.tasks.terms import PRIVILEGED_OBS, REWARD_FUNCTIONS, TERMINATION_FUNCTIONS, StepState


# ------------------------------------------------------------------ params
@dataclass
class ObsTerm:
    """One block of an observation."""

    name: str = MISSING
    """Unique name in the layout (metadata, logs)."""
    fn: Optional[str] = None
    """The term: ``export/rules.py: OBSERVATIONS`` (robot-side) or ``tasks/terms.py: PRIVILEGED_OBS``;
    null: same as ``name``."""
    sensor: Optional[str] = None
    """Sensor role (``robot.sensors``) for ``fn: sensor``."""
    noise: Any = 0.0
    """Uniform noise half-width, in the term's units (actor only): one number, or one per element of
    the term (e.g. per joint)."""
    bias: Any = 0.0
    """A sensor's bias: a constant offset U(-bias, bias) per element, drawn per env at every reset (actor
    only; times ``noise_level``), one number or one per element. Drawn only when some term sets it."""
    scale: float = 1.0
    """Multiplier applied after the noise."""


@dataclass
class EventTerm:
    """One event (``tasks/events.py``): what it does and its parameters."""

    fn: str = MISSING
    """Function in ``tasks/events.py: EVENT_FUNCTIONS``."""
    params: dict[str, Any] = field(default_factory=dict)
    """Its parameters (schema: the function's ``params`` dataclass)."""


@dataclass
class GaitParams:
    """A per-environment gait clock (off unless ``enable``); see the module docstring."""

    enable: bool = False
    frequency: list[float] = field(default_factory=lambda: [1.25, 1.5])
    """``[lo, hi]`` gait frequency (Hz, steps of one foot per second), drawn per env at every reset; the
    deploy loop (and the metadata) uses the middle of the range."""
    phase_offsets: list[float] = field(default_factory=list)
    """Each foot's phase offset in cycles, ``robot.feet`` order (a biped walking: ``[0.0, 0.5]``)."""
    random_start: bool = True
    """Start every episode at a random point of the cycle, U(0, 1) cycles (false: at 0, as the deploy
    loop does)."""


@dataclass
class HeightScanParams:
    """The privileged ``height_scan`` term: the base's height above the ground at a grid of points around it."""

    points: list[int] = field(default_factory=lambda: [11, 7])
    """Points along the base's heading and across it: a grid centred on the base, in its yaw frame."""
    spacing: float = 0.1
    """m between neighbouring points (11 x 7 at 0.1 m: 1.0 m x 0.6 m)."""
    clip: float = 1.0
    """Each value (base height above the ground at the point, m) clipped to [-clip, clip]."""


@dataclass
class JoystickParams:
    """Every number of the task (``env.task_params``)."""

    control_dt: float = 0.02
    """Policy period (s)."""
    sim_dt: float = 0.004
    solver_iterations: Optional[int] = None
    """Constraint solver iterations (``MjOption.iterations``); null: the model file's."""
    solver_ls_iterations: Optional[int] = None
    """Line-search iterations of the solver (``MjOption.ls_iterations``); null: the model file's."""
    action_scale: float = 0.5
    """rad per unit of action: the joint target is ``q0 + action_scale a``."""
    action_clip: list[float] = field(default_factory=lambda: [-1.0, 1.0])
    """``[lo, hi]``: the policy's actions are clipped to this range before the mapping (the farthest target
    is ``q0 + action_scale hi``); the env's action space, the exported graph's clip and the metadata's
    ``action_clip`` follow it."""
    action_latency: int = 0
    soft_joint_limit_factor: float = 0.95
    tracking_sigma: float = 0.25
    max_foot_height: float = 0.1
    """Target swing height (m) of the feet terms (``feet_phase``: the height at mid-swing); a
    ``swing_height_curriculum`` event ramps the target up to it."""
    feet_ground_radius: float = 0.0
    """On a terrain, the feet terms measure a foot's height above the highest ground within this distance
    (m) of it: under the foot and 4 points this far along +-x and +-y. 0: the ground under the foot. A swing
    that nears a riser then has the step's top as its ground, so ``max_foot_height`` asks for a foot that
    clears the step (flat ground: no difference)."""
    stumble_radius: float = 0.05
    """``feet_stumble`` (``StepState.stumble``): a foot in contact stumbles where the ground within this
    distance (m) of it ..."""
    stumble_height: float = 0.04
    """... rises more than this (m) above the ground under it."""
    feet_air_time_min: float = 0.1
    """``feet_air_time`` rewards each swing's air time above this (s)."""
    feet_air_time_max: Optional[float] = None
    """... counted up to this (s); null: no cap."""
    feet_phase_sigma: float = 0.01
    """``feet_phase``: ``exp(-sum_f (z_f - z*_f)^2 / sigma)`` (m^2)."""
    posture_sharpness: float = 10.0
    """``posture``: ``exp(-sharpness * sum_j w_j (q_j - q0_j)^2)`` at a zero command (1/rad^2)."""
    pose_weights: Optional[list[float]] = None
    """Per-joint weights of the ``pose`` reward (null: 1)."""
    noise_level: float = 1.0
    """Multiplies every obs term's noise (0: none)."""
    obs: list[ObsTerm] = field(default_factory=list)
    obs_history: int = 1
    """Frames of ``obs`` in the policy input: the current one and the ``obs_history - 1`` before it,
    newest first (``rules.push_history``; the env stacks them, the metadata's ``obs_history`` tells the
    robot-side controller to do the same)."""
    privileged_obs: list[ObsTerm] = field(default_factory=list)
    """Critic-only terms, after the actor's terms (noise-free)."""
    teacher_obs: list[str] = field(default_factory=list)
    """Names of ``privileged_obs`` terms the actor sees too, after its own (noise-free): a teacher policy,
    trained with what a robot cannot measure (e.g. ``height_scan``), to measure what that knowledge is worth
    or to distil a blind student from. Such a policy is not exported (its input is not the metadata's)."""
    reward_scales: dict[str, float] = field(default_factory=dict)
    reward_after_clip: list[str] = field(default_factory=list)
    """Reward terms added after the clip at 0: the step's reward is ``max(0, sum of the other terms) +
    sum of these``. Inside the clip a cost is lost wherever the other terms sum to less than it (a fall's
    ``termination`` of -1 x dt, on a step whose tracking reward has gone, costs nothing); legged_gym adds its
    termination term after the clip so. Empty: every term inside (Playground's rule)."""
    terminations: list[str] = field(default_factory=lambda: ["fallen"])
    """Termination terms (``tasks/terms.py: TERMINATION_FUNCTIONS``); the time limit is the engine's."""
    events: dict[str, EventTerm] = field(default_factory=dict)
    """Event terms by name, run in this order at every reset and around every step: the initial
    state, domain randomization, the velocity command (exactly one ``velocity_command``), pushes."""
    gait: GaitParams = field(default_factory=GaitParams)
    height_scan: HeightScanParams = field(default_factory=HeightScanParams)
    """The ``height_scan`` privileged term's grid (used only where a task lists the term)."""


GAIT_TERMS = ("gait_phase", "feet_phase")
"""Terms that read the gait clock (they need ``gait.enable``)."""


def _parse_event(name: str, event: EventTerm) -> EventTerm:
    """``event`` with its ``params`` validated into the function's typed schema."""
    if event.fn not in EVENT_FUNCTIONS:
        raise ConfigError(f"env.task_params.events.{name}: unknown function {event.fn!r}; known: "
                          f"{sorted(EVENT_FUNCTIONS)}")
    if not isinstance(event.params, dict):   # already typed
        return event
    schema = EVENT_FUNCTIONS[event.fn].params
    try:
        params = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), event.params))
    except Exception as e:  # omegaconf's errors name the key
        raise ConfigError(f"env.task_params.events.{name}.params: {e}".splitlines()[0]) from None
    return EventTerm(fn=event.fn, params=params)


def parse_params(params: Any) -> JoystickParams:
    """Validate ``env.task_params``.

    Raises:
        ConfigError: unknown key, wrong type, unknown term, bad timing (one line).
    """
    if isinstance(params, JoystickParams):
        return params
    try:
        p = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(JoystickParams), params or {}))
    except Exception as e:  # omegaconf's errors name the key
        raise ConfigError(f"env.task_params: {e}".splitlines()[0]) from None
    if len(p.action_clip) != 2 or not p.action_clip[0] < p.action_clip[1]:
        raise ConfigError(f"env.task_params.action_clip must be [lo, hi] with lo < hi, got {list(p.action_clip)}")
    if p.action_latency not in (0, 1):
        raise ConfigError(f"env.task_params.action_latency must be 0 or 1, got {p.action_latency}")
    ratio = p.control_dt / p.sim_dt if p.sim_dt > 0 else 0
    if p.sim_dt <= 0 or ratio < 1 or abs(ratio - round(ratio)) > 1e-6:
        raise ConfigError("env.task_params.control_dt must be a positive multiple of sim_dt")
    unknown = sorted(set(p.terminations) - set(TERMINATION_FUNCTIONS))
    if unknown:
        raise ConfigError(f"env.task_params.terminations: unknown term(s) {unknown}; known: "
                          f"{sorted(TERMINATION_FUNCTIONS)}")
    p.events = {name: _parse_event(name, e) for name, e in p.events.items()}
    commands = [e for e in p.events.values() if e.fn == "velocity_command"]
    if len(commands) != 1:
        raise ConfigError(f"env.task_params.events needs exactly one velocity_command event, found {len(commands)}")
    for group in ("obs", "privileged_obs"):
        names = [t.name for t in getattr(p, group)]
        for t in getattr(p, group):
            fn = t.fn or t.name
            if fn not in rules.OBSERVATIONS and fn not in PRIVILEGED_OBS:
                raise ConfigError(f"env.task_params.{group}: term {t.name!r} uses unknown function {fn!r}; "
                                  f"known: {sorted(rules.OBSERVATIONS) + sorted(PRIVILEGED_OBS)}")
            if group == "obs" and fn not in rules.OBSERVATIONS:
                raise ConfigError(f"env.task_params.obs: {t.name!r} ({fn}) is privileged (a robot cannot "
                                  "measure it); move it to privileged_obs")
            if fn == "sensor" and not t.sensor:
                raise ConfigError(f"env.task_params.{group}: {t.name!r} (fn: sensor) needs sensor: <role>")
        if len(set(names)) != len(names):
            raise ConfigError(f"env.task_params.{group} names a term twice: {names}")
    unknown = [n for n in p.teacher_obs if n not in {t.name for t in p.privileged_obs}]
    if unknown or len(set(p.teacher_obs)) != len(p.teacher_obs):
        raise ConfigError(f"env.task_params.teacher_obs: {p.teacher_obs} must name privileged_obs terms once each "
                          f"(privileged_obs: {[t.name for t in p.privileged_obs]})")
    unknown = sorted(set(p.reward_scales) - set(REWARD_FUNCTIONS))
    if unknown:
        raise ConfigError(f"env.task_params.reward_scales: unknown term(s) {unknown}; known: {sorted(REWARD_FUNCTIONS)}")
    outside = [k for k in p.reward_after_clip if not p.reward_scales.get(k)]
    if outside:
        raise ConfigError(f"env.task_params.reward_after_clip: {outside} must be reward_scales terms with a "
                          f"nonzero scale (reward_scales: {sorted(k for k, v in p.reward_scales.items() if v)})")
    if not p.obs:
        raise ConfigError("env.task_params.obs is empty: list the actor's observation terms")
    used = {t.fn or t.name for t in p.obs + p.privileged_obs} | {k for k, v in p.reward_scales.items() if v}
    if not p.gait.enable and used & set(GAIT_TERMS):
        raise ConfigError(f"env.task_params: {sorted(used & set(GAIT_TERMS))} read the gait clock: set "
                          "env.task_params.gait.enable=true (and gait.phase_offsets, one per foot)")
    lo, hi = p.gait.frequency if len(p.gait.frequency) == 2 else (0, -1)
    if p.gait.enable and not 0 < lo <= hi:
        raise ConfigError(f"env.task_params.gait.frequency must be [lo, hi] Hz with 0 < lo <= hi, got "
                          f"{p.gait.frequency}")
    hs = p.height_scan
    if len(hs.points) != 2 or min(hs.points) < 1 or not (hs.spacing > 0 and hs.clip > 0):
        raise ConfigError(f"env.task_params.height_scan needs points [nx, ny] >= 1, spacing > 0 and clip > 0, got "
                          f"{hs.points}, {hs.spacing}, {hs.clip}")
    return p


# -------------------------------------------------------------------- task
class Joystick:
    """The joystick task over ``physics.num_envs`` environments.

    Args:
        robot: the robot bound to its model (``RobotModel``; ``physics`` steps ``robot.model``).
        physics: the engine (``robo_ppo.robots.physics.Physics``).
        params: ``JoystickParams`` or a mapping of its fields.
        seed: seeds the task's torch generator (resets, commands, noise, randomization).

    Attributes: ``obs_size``, ``critic_obs_size``, ``action_size`` (= joints), ``dt`` (s),
    ``reward_terms`` (names, in ``step``'s ``terms`` order), ``obs_layout`` /
    ``critic_obs_layout`` (``[(name, size)]``).

    Raises:
        ConfigError: parameters or terms the robot cannot provide (one line).
    """

    name = "joystick"

    def __init__(self, robot: RobotModel, physics: Physics, params: Any = None, seed: int = 0):
        self.p = p = parse_params(params)
        self.robot, self.physics = robot, physics
        self.n, self.device = physics.num_envs, physics.device
        dev, f32 = self.device, torch.float32
        self.gen = torch.Generator(device=dev)
        self.gen.manual_seed(int(seed))
        self.n_substeps = int(round(p.control_dt / p.sim_dt))
        self.dt = p.control_dt
        J, F = robot.njoints, len(robot.feet_sites)
        self.action_size = J
        self.action_clip = (float(p.action_clip[0]), float(p.action_clip[1]))
        """The action range ``(lo, hi)`` (``action_clip``): the env's action space."""
        if p.obs_history < 1:
            raise ConfigError(f"env.task_params.obs_history must be >= 1 (frames in the policy input), "
                              f"got {p.obs_history}")
        self.history_length = p.obs_history
        """Frames of the observation in the policy input (the env stacks them: ``RobotVecEnv``)."""
        tensor = lambda x, dtype=f32: torch.as_tensor(x, dtype=dtype, device=dev)  # noqa: E731
        self.q0 = tensor(robot.default_pose)
        self.pose_weights = tensor(p.pose_weights if p.pose_weights is not None else [1.0] * J)
        if len(self.pose_weights) != J:
            raise ConfigError(f"env.task_params.pose_weights has {len(self.pose_weights)} entries; {J} joints")
        lo, hi = robot.joint_range.T
        mid, half = (lo + hi) / 2, (hi - lo) / 2 * p.soft_joint_limit_factor
        self.soft_lower, self.soft_upper = tensor(mid - half), tensor(mid + half)
        self.init_qpos = tensor(robot.init_qpos)
        self.torque_unit = float(robot.model.body_mass.sum() * 9.81 * robot.init_qpos[robot.root_qpos + 2])
        """N m: the robot's weight times its base height at the init keyframe, m g h, the unit of the torque
        costs (``torques``, ``energy``), so that one cost scale fits robots of any size (derived from the
        model, not configured)."""
        self.qpos_adr, self.dof_adr = tensor(robot.qpos_adr, torch.long), tensor(robot.dof_adr, torch.long)
        self.act_ids = tensor(robot.act_ids, torch.long)
        self.reward_terms = tuple(k for k, v in p.reward_scales.items() if v != 0.0)
        self._scales = tensor([p.reward_scales[k] for k in self.reward_terms])
        after = [k in p.reward_after_clip for k in self.reward_terms]
        self._after_clip = tensor(after, torch.bool) if any(after) else None
        """bool ``[K]``: the terms summed after the clip at 0 (``reward_after_clip``); None: none."""
        # without a gait the clock still runs (phase 0 per foot), so every term is defined on every robot
        self.gait_offsets = tensor(p.gait.phase_offsets if p.gait.enable else [0.0] * F, torch.float64)
        if p.gait.enable and len(p.gait.phase_offsets) != F:
            raise ConfigError(f"env.task_params.gait.phase_offsets has {len(p.gait.phase_offsets)} entries; "
                              f"{robot.desc.name} has {F} feet (robot.feet)")
        # per-env state
        N = self.n
        zeros = lambda *shape, dtype=f32: torch.zeros(N, *shape, dtype=dtype, device=dev)  # noqa: E731
        self.last_act = zeros(J)
        self.air_time, self.swing_peak, self.last_contact = zeros(F), zeros(F), zeros(F, dtype=torch.bool)
        self.joint_offset, self.dr_summary = zeros(J), zeros(7)   # written by a randomize_model event
        self.late_action = torch.full((N,), bool(p.action_latency), device=dev)   # ... and this, with latency_prob
        self.ctrl = zeros(physics.model.nu)
        self.steps = zeros(dtype=torch.long)   # control steps since reset: the gait clock's time
        self.gait_freq = torch.full((N,), sum(p.gait.frequency) / 2, dtype=torch.float64, device=dev)   # Hz
        self.gait_start = zeros(dtype=torch.float64)   # cycles
        self.step_count = 0        # control steps per env since training began (a curriculum's clock)
        self.clock_envs = N        # envs that step together in training (set_clock): env steps = step_count x this
        self.penalty_factor = 1.0  # on negative reward scales; a penalty_curriculum event ramps it
        self.swing_target = p.max_foot_height   # m, the feet terms' target; a swing_height_curriculum event ramps it
        self._init_terrain()
        self._events = [(EVENT_FUNCTIONS[e.fn], e.params) for e in p.events.values()]
        for fn, params in self._events:
            if fn.init is not None:
                fn.init(self, params)
        if self.terrain is not None and self.terrain.config.layout == "grid" and not any(
                e.fn == "terrain_curriculum" for e in p.events.values()):
            raise ConfigError("env.terrain is a grid: env.task_params.events needs a terrain_curriculum event "
                              "(it places the envs on the patches)")
        self._stat_fns = [(fn.stats, params) for fn, params in self._events if fn.stats is not None]
        self._refresh()
        self._layouts()
        self._check_terms()
        self.stat_names = tuple(self.stats())
        """Names of the task's per-iteration statistics (``stats()``; e.g. ``terrain/level``)."""

    def _init_terrain(self) -> None:
        """The per-env terrain state (only on a terrain: without one, nothing is added, so the flat task's
        state, random stream and numbers stay as they were)."""
        self.terrain = terrain = self.robot.terrain
        self.out_of_bounds: Optional[torch.Tensor] = None
        """bool ``[N]`` after each step on a terrain: the base came within the robot's footprint of the terrain's
        edge (the env truncates the episode); None without a terrain."""
        if terrain is None:
            return
        N, dev = self.n, self.device
        self.terrain_row = torch.zeros(N, dtype=torch.long, device=dev)
        """long ``[N]``: each env's patch row (its level, in a grid without ``window``), set by the events."""
        self.terrain_col = torch.zeros(N, dtype=torch.long, device=dev)
        self.terrain_spawn = torch.as_tensor(terrain.spawn, dtype=torch.float32, device=dev)   # [R, C, 3]
        self.terrain_start = torch.zeros(N, 2, device=dev)
        """float32 ``[N, 2]``: the base's world x, y at the start of each env's episode (m)."""
        self.last_terminated = torch.zeros(N, dtype=torch.bool, device=dev)   # the last step's terminations
        self.out_of_bounds = torch.zeros(N, dtype=torch.bool, device=dev)
        reach = float(self.robot.footprint)
        ox, oy = _disc(reach, terrain.spacing)
        # constants kept out of the state dict (a tuple, not tensor attributes)
        self._footprint_offsets = (torch.as_tensor(ox, dtype=torch.float32, device=dev),
                                   torch.as_tensor(oy, dtype=torch.float32, device=dev))
        lo, hi = terrain.origin, terrain.origin + terrain.extent
        self._bounds = (float(lo[0]) + reach, float(hi[0]) - reach, float(lo[1]) + reach, float(hi[1]) - reach)

    # ---------------------------------------------------------------- terrain
    def ground(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Ground height (m) at world ``x``, ``y`` (float32 tensors, any equal shape): the terrain's surface
        as MuJoCo has it (``Terrain.height_at``), 0 without a terrain."""
        if self.terrain is None:
            return torch.zeros_like(x)
        return self.terrain.height_at(x, y)

    def _footprint_ground(self, x: torch.Tensor, y: torch.Tensor, highest: bool) -> torch.Tensor:
        """float32 ``[N]``: the highest (else lowest) ground within the robot's footprint around ``x``, ``y`` ``[N]``."""
        ox, oy = self._footprint_offsets
        h = self.terrain.height_at(x[:, None] + ox, y[:, None] + oy)
        return h.amax(1) if highest else h.amin(1)

    def base_height(self) -> torch.Tensor:
        """float32 ``[N]``: the base body's height (m) above the ground: ``z`` without a terrain; on one, above
        the lowest ground within the robot's footprint (the deploy loop's rule, ``harness.base_height``: a
        trunk above a step whose feet are below it has not fallen)."""
        r0 = self.robot.root_qpos
        z = self.qpos[:, r0 + 2]
        if self.terrain is None:
            return z
        return z - self._footprint_ground(self.qpos[:, r0], self.qpos[:, r0 + 1], highest=False)

    def base_yaw(self) -> torch.Tensor:
        """float32 ``[N]``: the base's heading (rad, ``rules.heading`` of its ``w, x, y, z`` quaternion)."""
        return rules.heading(self.qpos[:, self.robot.root_qpos + 3:self.robot.root_qpos + 7])

    def height_scan(self) -> torch.Tensor:
        """float32 ``[N, nx * ny]``: the base's height above the ground at each point of a grid around it in
        its yaw frame (``height_scan``: ``points``, ``spacing``), clipped to ``[-clip, clip]``; x-major (the
        points along the heading vary slowest)."""
        hs, r0, dev = self.p.height_scan, self.robot.root_qpos, self.device
        nx, ny = hs.points
        gx = (torch.arange(nx, device=dev, dtype=torch.float32) - (nx - 1) / 2) * hs.spacing
        gy = (torch.arange(ny, device=dev, dtype=torch.float32) - (ny - 1) / 2) * hs.spacing
        gx, gy = (g.reshape(-1) for g in torch.meshgrid(gx, gy, indexing="ij"))
        yaw = self.base_yaw()
        c, s = torch.cos(yaw)[:, None], torch.sin(yaw)[:, None]
        x = self.qpos[:, r0:r0 + 1] + c * gx - s * gy
        y = self.qpos[:, r0 + 1:r0 + 2] + s * gx + c * gy
        return (self.qpos[:, r0 + 2:r0 + 3] - self.ground(x, y)).clamp(-hs.clip, hs.clip)

    def _place(self, state: ResetState, mask: torch.Tensor) -> None:
        """Put every row of ``state`` on its patch (``terrain_row``, ``terrain_col``): the spawn point's x, y
        added, and the highest ground within the robot's footprint there added to the base height; the start
        of the rows in ``mask`` kept in ``terrain_start``."""
        r0 = self.robot.root_qpos
        spawn = self.terrain_spawn[self.terrain_row, self.terrain_col]
        x, y = state.qpos[:, r0] + spawn[:, 0], state.qpos[:, r0 + 1] + spawn[:, 1]
        z = state.qpos[:, r0 + 2] + self._footprint_ground(x, y, highest=True)
        state.qpos[:, r0:r0 + 3] = torch.stack([x, y, z], 1).to(state.qpos.dtype)
        self.terrain_start = torch.where(mask[:, None], torch.stack([x, y], 1), self.terrain_start)

    def stats(self) -> dict[str, torch.Tensor]:
        """The task's statistics now, scalar tensors by name (``stat_names``): what its events report (the
        ``terrain_curriculum``'s ``terrain/level``, the mean level of the envs)."""
        out: dict[str, torch.Tensor] = {}
        for fn, params in self._stat_fns:
            out.update(fn(self, params))
        return out

    def _layouts(self) -> None:
        """Observation layouts from the declarations: entries ``{name, fn, start, size, scale[, sensor]}``
        (the deploy kit's form), each term's size measured by evaluating it once (a sensor role the
        robot lacks fails here, naming it)."""
        p, inputs, start = self.p, self.inputs(), 0
        entries = []
        for t in p.obs + p.privileged_obs:
            fn = t.fn or t.name
            sensor = t.sensor or getattr(rules.OBSERVATIONS.get(fn), "sensor", None)   # the role it reads
            entry = {"name": t.name, "fn": fn, "scale": t.scale, **({"sensor": sensor} if sensor else {})}
            size = int(self._value(entry, inputs).shape[-1])
            entries.append({**entry, "start": start, "size": size})
            start += size
        self.layout = entries[:len(p.obs)]
        """The actor's observation layout (``rules.OBSERVATIONS`` terms; the metadata's ``obs_layout``)."""
        self._priv_entries = entries[len(p.obs):]
        by_name = {e["name"]: i for i, e in enumerate(self._priv_entries)}
        self._teacher_idx = [by_name[n] for n in p.teacher_obs]    # into the privileged terms, teacher_obs order
        teacher = [self._priv_entries[i] for i in self._teacher_idx]
        self.obs_layout = [(e["name"], e["size"]) for e in self.layout + teacher]
        self.critic_obs_layout = [(e["name"], e["size"]) for e in entries]
        self.robot_obs_size = sum(e["size"] for e in self.layout)
        """The robot-side part of the actor's observation (the metadata's ``obs_layout``)."""
        self.obs_size = self.robot_obs_size + sum(e["size"] for e in teacher)
        """The actor's observation: the robot-side terms, then ``teacher_obs``'s."""
        self.critic_obs_size = start if self._priv_entries else 0
        self._noise = [self._term_width(t, "noise", e["size"]) for t, e in zip(p.obs, self.layout, strict=True)]
        bias = [self._term_width(t, "bias", e["size"]) for t, e in zip(p.obs, self.layout, strict=True)]
        self._bias_width = torch.cat([torch.as_tensor(b, dtype=torch.float32, device=self.device).expand(e["size"])
                                      for b, e in zip(bias, self.layout, strict=True)])
        self._has_bias = bool((self._bias_width != 0).any())
        self.obs_bias = torch.zeros(self.n, self.robot_obs_size, device=self.device)
        """float32 ``[N, robot_obs_size]``: each env's sensor biases this episode (term units; ``ObsTerm.bias``)."""

    def _value(self, entry: dict[str, Any], inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """An observation term's unscaled value: the kit's rule for a robot-side term, else privileged."""
        term = rules.OBSERVATIONS.get(entry["fn"])
        return term.value(inputs, entry) if term is not None else PRIVILEGED_OBS[entry["fn"]](self, entry)

    def _check_terms(self) -> None:
        """Evaluate every observation, reward and termination term once, so a sensor role or per-foot
        sensor the robot lacks fails at start-up with the description key to set (the sensors a
        robot needs follow from the terms its task uses)."""
        self.observe(noise=False)
        s = StepState(self, self.last_act)
        for k in self.reward_terms:
            REWARD_FUNCTIONS[k](self, s)
        self.terminations(s)

    def _term_width(self, term: ObsTerm, key: str, size: int):
        """An obs term's ``noise`` or ``bias`` half-width: a float, or float32 ``[size]`` for a per-element list."""
        width = getattr(term, key)
        if isinstance(width, list | tuple) or OmegaConf.is_list(width):
            if len(width) != size:
                raise ConfigError(f"env.task_params.obs: {term.name!r} has {len(width)} {key} entries for "
                                  f"{size} elements")
            return torch.as_tensor([float(x) for x in width], dtype=torch.float32, device=self.device)
        return float(width)

    # ---------------------------------------------------------------- helpers
    def gait_phase(self) -> torch.Tensor:
        """Each foot's gait phase (rad, in [-pi, pi)) float32 ``[N, F]``: ``2 pi (start + offset_f +
        f t)``, ``t`` the time since reset (s). 0: mid-swing; -pi (= pi): touch-down."""
        t = self.steps.double() * self.dt
        return rules.gait_phase(t[:, None], self.gait_freq[:, None], self.gait_offsets[None, :],
                                self.gait_start[:, None]).float()

    def uniform(self, lo, hi, *shape) -> torch.Tensor:
        """float32 ``[N, *shape]`` draws U(lo, hi) from the task's generator (``lo``, ``hi`` broadcast)."""
        u = torch.rand(self.n, *shape, generator=self.gen, device=self.device)
        return lo + (hi - lo) * u

    def exp_steps(self, mean_s: float) -> torch.Tensor:
        """int64 ``[N]``: exponential times with mean ``mean_s`` seconds, in control steps."""
        u = torch.rand(self.n, generator=self.gen, device=self.device).clamp_min(1e-12)
        return torch.round(-torch.log(u) * mean_s / self.dt).long()

    def _refresh(self) -> None:
        """Read the physics state the observation terms use."""
        ph = self.physics
        self.sd, self.qpos, self.qvel = ph.sensordata, ph.qpos, ph.qvel
        self.joint_pos, self.joint_vel = self.qpos[:, self.qpos_adr], self.qvel[:, self.dof_adr]

    def _set_ctrl(self, applied: torch.Tensor) -> torch.Tensor:
        # the robot believes it is at q + offset, so its PD holds q at q* - offset
        target = rules.joint_targets(applied, self.q0, self.p.action_scale) - self.joint_offset
        return self.ctrl.index_copy(1, self.act_ids, target)

    # ------------------------------------------------------------------- api
    def reset(self, mask: torch.Tensor) -> None:
        """Start new episodes where ``mask`` (bool ``[N]``): from the init keyframe, the reset hooks of
        the events in order (initial state, randomization, command, push timer), fresh per-episode
        state and gait clock. Draws for every row (the random stream does not depend on which rows
        reset)."""
        p, N, dev = self.p, self.n, self.device
        state = ResetState(qpos=self.init_qpos.repeat(N, 1), qvel=torch.zeros(N, self.physics.model.nv, device=dev))
        for fn, params in self._events:
            if fn.reset is not None:
                fn.reset(self, state, mask, params)
        if self.terrain is not None:   # after every event: a terrain_curriculum may have moved the env
            self._place(state, mask)
        m = mask[:, None]
        self.last_act = torch.where(m, 0.0, self.last_act)
        self.air_time = torch.where(m, 0.0, self.air_time)
        self.swing_peak = torch.where(m, 0.0, self.swing_peak)
        self.last_contact = torch.where(m, False, self.last_contact)
        self.ctrl = torch.where(m, self._set_ctrl(torch.zeros_like(self.last_act)), self.ctrl)
        self.steps = torch.where(mask, 0, self.steps)
        if self._has_bias:   # drawn only with a bias, so other random streams stay
            bias = (2 * torch.rand(N, self.robot_obs_size, generator=self.gen, device=dev) - 1) * self._bias_width
            self.obs_bias = torch.where(mask[:, None], bias, self.obs_bias)
        g = p.gait
        if g.enable:   # drawn only for a gait, so other robots' random streams do not change
            u = torch.rand(N, 2, generator=self.gen, device=dev, dtype=torch.float64)
            lo, hi = g.frequency
            self.gait_freq = torch.where(mask, lo + (hi - lo) * u[:, 0], self.gait_freq)
            self.gait_start = torch.where(mask, u[:, 1] if g.random_start else 0.0, self.gait_start)
        self.physics.set_state(mask, state.qpos, state.qvel, self.ctrl)
        self._refresh()

    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One control step with ``actions`` float32 ``[N, J]``.

        Returns ``(reward [N], terminated [N] bool, terms [N, K])``: ``terms`` are the scaled
        reward terms (``reward_terms`` order) before the clip at 0 (``reward_after_clip``: the terms added
        after it).
        """
        ph = self.physics
        actions = rules.clip_action(actions, *self.action_clip)
        applied = torch.where(self.late_action[:, None], self.last_act, actions)
        self.ctrl = self._set_ctrl(applied)
        for fn, params in self._events:
            if fn.pre_step is not None:
                fn.pre_step(self, params)
        ph.step(self.ctrl, self.n_substeps)
        self._refresh()
        self.steps = self.steps + 1
        s = StepState(self, actions)
        raw = torch.stack([REWARD_FUNCTIONS[k](self, s) for k in self.reward_terms], 1)
        scales = self._scales
        if self.penalty_factor != 1.0:
            scales = torch.where(scales < 0, scales * self.penalty_factor, scales)
        terms = raw * scales * self.dt
        if self._after_clip is None:
            reward = terms.sum(1).clamp_min(0.0)
        else:
            reward = terms.masked_fill(self._after_clip, 0.0).sum(1).clamp_min(0.0) + (terms * self._after_clip).sum(1)
        self.step_count += 1
        air_time, contact, swing_peak, terminated = s.air_time, s.contact, s.swing_peak, s.terminated
        self.last_act = actions
        self.air_time = air_time * ~contact
        self.swing_peak = swing_peak * ~contact
        self.last_contact = contact
        if self.terrain is not None:
            self.last_terminated = terminated
            x0, x1, y0, y1 = self._bounds
            xy = self.qpos[:, self.robot.root_qpos:self.robot.root_qpos + 2]
            self.out_of_bounds = (xy[:, 0] < x0) | (xy[:, 0] > x1) | (xy[:, 1] < y0) | (xy[:, 1] > y1)
        for fn, params in self._events:
            if fn.post_step is not None:
                fn.post_step(self, params)
        return reward, terminated, terms

    def set_clock(self, step_count: int, clock_envs: Optional[int] = None) -> None:
        """Set the training clock (``step_count``: control steps per env since training began; with
        ``clock_envs``, the envs that step together in training, all data-parallel ranks' included, so
        that the curricula count ``step_count x clock_envs`` env steps) and the state of the events that
        follow it (curriculum ranges and factors), as they were at that step."""
        self.step_count = int(step_count)
        if clock_envs is not None:
            self.clock_envs = int(clock_envs)
        for fn, params in self._events:
            if fn.clock is not None:
                fn.clock(self, params)

    READINGS = ("sd", "qpos", "qvel", "joint_pos", "joint_vel")
    """Attributes that are the engine's readings (``_refresh``), not task state."""

    def state_dict(self) -> dict[str, Any]:
        """The task's state between two steps, for exact resume: every tensor the task and its events
        hold (commands, last actions, gait clock, air times, push and command timers, randomized offsets,
        curriculum ranges; the constants too, which is harmless), the training clock, the penalty,
        model-mismatch and randomization factors and the generator. Tensors are CPU copies."""
        tensors = {k: v.detach().cpu().clone() for k, v in vars(self).items()
                   if isinstance(v, torch.Tensor) and k not in self.READINGS}
        return {"tensors": tensors, "step_count": int(self.step_count), "penalty_factor": float(self.penalty_factor),
                "mismatch_factor": float(getattr(self, "mismatch_factor", 1.0)),
                "randomize_factor": float(getattr(self, "randomize_factor", 1.0)),
                "generator": self.gen.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict()`` of a task of the same config, after the engine's ``restore``
        (the readings are re-read from it).

        Raises:
            ValueError: a tensor the task does not hold, or of another shape or dtype.
        """
        for k, v in state["tensors"].items():
            mine = getattr(self, k, None)
            if not isinstance(mine, torch.Tensor) or mine.shape != v.shape or mine.dtype != v.dtype:
                raise ValueError(f"task state {k!r} {tuple(v.shape)} {v.dtype} does not fit this task "
                                 f"({None if mine is None else (tuple(mine.shape), mine.dtype)})")
            setattr(self, k, v.to(self.device).clone())
        self.step_count, self.penalty_factor = int(state["step_count"]), float(state["penalty_factor"])
        if hasattr(self, "mismatch_factor"):   # a randomize_model event's (checkpoints before it: 1)
            self.mismatch_factor = float(state.get("mismatch_factor", 1.0))
            self.randomize_factor = float(state.get("randomize_factor", 1.0))
        self.gen.set_state(state["generator"])
        self._refresh()

    @property
    def command_params(self):
        """The ``velocity_command`` event's parameters (``VelocityCommandParams``)."""
        return next(e.params for e in self.p.events.values() if e.fn == "velocity_command")

    def terminations(self, s: StepState) -> torch.Tensor:
        """bool ``[N]``: any of the configured termination terms."""
        out = torch.zeros(self.n, dtype=torch.bool, device=self.device)
        for name in self.p.terminations:
            out = out | TERMINATION_FUNCTIONS[name](self, s)
        return out

    def inputs(self) -> dict[str, torch.Tensor]:
        """What a robot measures and keeps, named as the deploy kit's rules read it (``rules.OBSERVATIONS``):
        every sensor role, ``joint_pos`` (encoders: the joint angle plus the calibration error),
        ``joint_vel``, ``last_action``, ``command``, ``gait_phase`` and ``default_pose``; computed on use."""
        return _Inputs(self)

    def observe(self, noise: bool = True) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """``(obs [N, obs_size], critic_obs [N, critic_obs_size] or None)`` of the current state;
        the actor's terms get the episode's bias and U(-noise, noise), both times ``noise_level``, unless
        ``noise=False``."""
        level = self.p.noise_level if noise else 0.0
        actor, clean = [], []
        inputs = self.inputs()
        values = rules.observation_values(inputs, self.layout)
        for t, noise, value, e in zip(self.p.obs, self._noise, values, self.layout, strict=True):
            clean.append(t.scale * value)
            if level and t.bias:
                value = value + self.obs_bias[:, e["start"]:e["start"] + e["size"]] * level
            if level and (not isinstance(noise, float) or noise):
                value = value + (2 * torch.rand(value.shape, generator=self.gen, device=self.device) - 1) * (
                    noise * level)
            actor.append(t.scale * value)
        if not self._priv_entries:
            return torch.cat(actor, 1), None
        priv = [e["scale"] * self._value(e, inputs) for e in self._priv_entries]
        return torch.cat(actor + [priv[i] for i in self._teacher_idx], 1), torch.cat(clean + priv, 1)

    # --------------------------------------------------------------- metadata
    def metadata(self) -> dict[str, Any]:
        """The robot contract (``RobotMetadata`` of the deploy kit, JSON-ready; goes into the ONNX file
        as ``robot``), derived from the robot description and the term declarations: the model file,
        joint order, default pose, action scale and clip, PD gains, torque limits and target range,
        rates, the actor's observation layout (``rules.OBSERVATIONS`` entries), the commands and their
        ranges, the action latency, the fall condition, the sensors added to the scene, with a gait
        the clock (``frequency_hz``: the middle of the training range; ``phase_offsets``), and the
        commands' ``rate_limit`` (``command_rate_limit``)."""
        rb, p, d = self.robot, self.p, self.robot.desc
        finite = bool(np.isfinite(rb.target_range).all())
        return RobotMetadata(
            name=d.name, task=self.name,
            model=ModelSource(package=d.model.package, path=d.model.path, install=d.model.install),
            joint_names=list(d.joint_names), default_pose=[float(x) for x in rb.default_pose],
            init_keyframe=d.init_keyframe, action_scale=p.action_scale, action_clip=list(self.action_clip),
            kp=[float(x) for x in rb.kp], kd=[float(x) for x in rb.kd],
            torque_limits=[float(x) for x in rb.torque_limits],
            target_range=[[float(lo), float(hi)] for lo, hi in rb.target_range] if finite else None,
            armature=[float(x) for x in rb.model.dof_armature[rb.dof_adr]],
            control_dt=p.control_dt, sim_dt=p.sim_dt, solver_iterations=int(rb.model.opt.iterations),
            solver_ls_iterations=int(rb.model.opt.ls_iterations),
            base_body=d.base_body, imu_site=d.imu_site, floor_geom=d.floor_geom, sensors=dict(d.sensors),
            obs_layout=[dict(e) for e in self.layout],
            critic_obs_layout=[{"name": n, "size": s} for n, s in self.critic_obs_layout],
            commands=list(COMMANDS),
            command_ranges={k: [float(v) for v in r] for k, r in zip(COMMANDS, self.command_params.ranges, strict=True)},
            action_latency=p.action_latency,
            fall=Fall(max_tilt_cos=d.fall.max_tilt_cos, min_base_height=d.fall.min_base_height),
            extra_sensors=[dict(x) for x in rb.extra_sensors],
            gait=Gait(frequency_hz=sum(p.gait.frequency) / 2, phase_offsets=[float(x) for x in p.gait.phase_offsets])
            if p.gait.enable else None,
            obs_history=ObsHistory(length=p.obs_history) if p.obs_history > 1 else None,
            command_rate_limit=None if (rate := self.command_params.rate_limit) is None else [float(x) for x in rate],
        ).to_dict()


class _Inputs(dict):
    """``Joystick.inputs()``: a dict that computes each robot-side input on first use."""

    def __init__(self, task: Joystick):
        super().__init__()
        self.t = task

    def __missing__(self, key: str) -> torch.Tensor:
        t = self.t
        if key == "joint_pos":
            value = t.joint_pos + t.joint_offset
        elif key == "joint_vel":
            value = t.joint_vel
        elif key == "last_action":
            value = t.last_act
        elif key == "command":
            value = t.command
        elif key == "gait_phase":
            value = t.gait_phase()
        elif key == "default_pose":
            value = t.q0
        else:
            value = t.sd[:, t.robot.sensor(key)]
        self[key] = value
        return value


__all__ = ["Joystick", "JoystickParams", "ObsTerm", "GaitParams", "HeightScanParams", "parse_params", "COMMANDS",
           "GAIT_TERMS"]
