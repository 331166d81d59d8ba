"""Typed configuration schema, registered in Hydra's ConfigStore.

The YAML files in ``conf/`` are merged on top of these dataclasses, so a key
that does not exist or a value of the wrong type fails at composition time with
a message that names the full key (e.g. ``algo.clip_coef``).

Where each knob lives:

* ``env``      which task (``conf/env/<task>.yaml``; those files also carry
               the per-task PPO preset, which is why they are ``_global_``);
               ``env.terrain`` the ground of a robot task (``conf/terrain/``)
* ``algo``     PPO: rollout size, losses, schedules, network, normalization
* ``engine``   which simulator engine steps the task (``conf/engine/``)
* top level    run-level settings: seed, budget, device, logging, resume
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from robo_ppo.deploy_kit.terrain import TerrainConfig


class Loss(str, Enum):
    """Policy loss: ``clip`` = PPO2 clipped surrogate (Schulman et al. 2017, eq. 7);
    ``kl`` = PPO1 adaptive KL penalty (same paper, eq. 8 and section 4)."""

    clip = "clip"
    kl = "kl"


class LRSchedule(str, Enum):
    """``constant``; ``linear`` anneal to 0 over the run; ``adaptive`` scales
    the rate by 1.5 to hold the minibatch KL near ``desired_kl``."""

    constant = "constant"
    linear = "linear"
    adaptive = "adaptive"


@dataclass
class EnvConfig:
    name: str = MISSING
    """Short task name, e.g. ``halfcheetah`` (the file name in conf/env/)."""
    id: str = MISSING
    """Gymnasium id, e.g. ``HalfCheetah-v5``."""
    envpool_id: Optional[str] = None
    """EnvPool task id, when EnvPool provides the task (e.g. ``HalfCheetah-v4``)."""
    brax_id: Optional[str] = None
    """Brax ``brax.envs`` name, when Brax provides the task (e.g. ``halfcheetah``)."""
    max_episode_steps: Optional[int] = None
    """Time limit in env steps; ``null`` keeps the task's registered limit."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra keyword arguments for ``gymnasium.make``."""
    task: Optional[str] = None
    """A robo_ppo robot task (``robo_ppo/tasks/``, e.g. ``joystick``), stepped by ``engine=mujoco``
    or ``engine=mjwarp``; ``null`` for gymnasium/EnvPool/Brax tasks."""
    task_params: dict[str, Any] = field(default_factory=dict)
    """The task's parameters (validated by the task's own schema, e.g. ``JoystickParams``)."""
    robot: Optional[Any] = None
    """The robot description of a robot task (Hydra group ``robot``: ``conf/robot/<name>.yaml``,
    schema ``robo_ppo.robots.RobotDescription``); ``null`` for other tasks."""
    terrain: TerrainConfig = field(default_factory=TerrainConfig)
    """The ground of a robot task (Hydra group ``terrain``: ``conf/terrain/<name>.yaml``, e.g.
    ``terrain=rough``; schema: the deploy kit's ``terrain.TerrainConfig``, docs/terrain.md). The default,
    ``layout: none`` (``terrain=flat``), is the robot scene's own floor: nothing changes."""


@dataclass
class EngineConfig:
    name: str = "gymnasium"
    """Simulator engine: ``gymnasium`` (CPU), ``envpool`` (CPU, C++ threads), ``brax`` (JAX), and for
    robot tasks ``mujoco`` (native MuJoCo, CPU threads) or ``mjwarp`` (MuJoCo Warp, GPU)."""
    num_threads: int = 0
    """EnvPool / native MuJoCo worker threads; 0 = one per core."""
    pipeline: str = "mjx"
    """Brax physics pipeline: mjx, generalized, positional or spring."""


@dataclass
class PPOConfig:
    # rollout
    num_envs: int = 1
    """Parallel environments stepped per rollout step."""
    num_steps: int = 2048
    """Steps per environment per rollout; batch size = num_envs * num_steps."""
    # optimisation
    num_minibatches: int = 32
    """Minibatches the batch is split into per epoch."""
    update_epochs: int = 10
    """Passes over the batch per iteration (K in the PPO paper)."""
    learning_rate: float = 3e-4
    """Adam step size."""
    adam_eps: float = 1e-5
    """Adam epsilon (Baselines' PPO2 value)."""
    lr_schedule: LRSchedule = LRSchedule.linear
    """constant | linear (to 0 over total_timesteps) | adaptive (KL-driven)."""
    desired_kl: float = 0.01
    """Adaptive schedule: lr /= 1.5 when minibatch KL > 2x this, *= 1.5 when < half."""
    lr_min: float = 1e-5
    """Adaptive schedule: lower bound of the learning rate."""
    lr_max: float = 1e-2
    """Adaptive schedule: upper bound of the learning rate."""
    max_grad_norm: float = 0.5
    """Global gradient-norm clip."""
    target_kl: Optional[float] = None
    """Early stop: before each minibatch step, that minibatch's approx KL (rollout policy vs
    current) is measured; above this, the step is not applied and the update ends (SB3's
    rule, without its 1.5 factor; null = never)."""
    # returns and advantages
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 0.95
    """GAE lambda (Schulman et al. 2016)."""
    norm_adv: bool = True
    """Normalise advantages per minibatch."""
    # losses
    loss: Loss = Loss.clip
    """clip (PPO2) or kl (PPO1 adaptive KL penalty)."""
    clip_coef: float = 0.2
    """Surrogate clip epsilon."""
    kl_target: float = 0.01
    """PPO1: d_targ; beta doubles when KL > 1.5 d_targ and halves when KL < d_targ / 1.5."""
    kl_coef_init: float = 1.0
    """PPO1: initial beta (adapted after each update from the exact KL over the whole batch)."""
    clip_vloss: bool = True
    """Clip the value update around the rollout's value estimate."""
    vf_clip_coef: float = 0.2
    """Value clip range (in the units of the, possibly scaled, returns)."""
    vf_coef: float = 0.5
    """Weight of the value loss."""
    ent_coef: float = 0.0
    """Weight of the entropy bonus."""
    bounds_loss_coef: float = 0.0
    """Weight of the bounds loss on the Gaussian mean beyond the action space's bounds
    (``robo_ppo.algo.losses.bounds_loss``; 0 = off). The env clips actions, so past a bound
    every sample acts alike and nothing in the surrogate pulls the mean back: it drifts
    out and the policy stops exploring that joint there (docs/terrain.md, "Eleventh run")."""
    symmetry_coef: float = 0.0
    """Weight of the mirror symmetry loss (``robo_ppo.algo.losses.symmetry_loss``, Yu et al. 2018; 0 =
    off): the policy's mean action on a mirrored observation should be the mirrored mean action. Robot
    tasks only; the maps are derived from the model (``robo_ppo/robots/symmetry.py``)."""
    symmetry_augmentation: bool = False
    """Mirror data augmentation (Mittal et al. 2024): the update's policy terms also run over the mirror
    image of every sample, with the sample's advantage (``TorchKernel.loss_terms``). Robot tasks with
    the clipped surrogate (``loss: clip``) only; the value loss stays on the rollout's samples."""
    # normalisation
    normalize_obs: bool = True
    """Running mean/std observation normalisation inside the policy."""
    obs_clip: float = 5.0
    """Clip of normalised observations (Baselines: 5)."""
    normalize_reward: bool = True
    """Divide rewards by the running std of the discounted return."""
    reward_clip: float = 10.0
    """Clip of scaled rewards."""
    # network
    actor_hidden_sizes: list[int] = field(default_factory=lambda: [64, 64])
    """Hidden layer widths of the actor MLP."""
    critic_hidden_sizes: list[int] = field(default_factory=lambda: [64, 64])
    """Hidden layer widths of the critic MLP."""
    activation: str = "tanh"
    """Hidden activation: tanh, relu, elu or silu."""
    init_log_std: float = 0.0
    """Initial log standard deviation of the Gaussian policy."""
    ortho_init: bool = True
    """Orthogonal init (gain sqrt(2) hidden, 0.01 policy head, 1 value head)."""
    # safety
    kernel_check_interval: int = 50
    """compute=numpy: compare one minibatch's numpy gradient with torch autograd, both in float64 on a
    copy of the policy, every this many iterations, from the first (a relative difference above 1e-6
    stops the run; 0 = off)."""


@dataclass
class WandbConfig:
    """Weights & Biases logging (rank 0 only; needs the ``wandb`` extra)."""
    enabled: bool = False
    """Log the run to W&B: the TensorBoard scalars under the same tags, the resolved config,
    the learning-curve image and policy.onnx as a ``model`` artifact at the end."""
    project: str = "robo_ppo"
    """W&B project."""
    entity: Optional[str] = None
    """W&B entity (user or team); null = your default entity."""
    group: Optional[str] = None
    """W&B group, e.g. one name for the seeds of a sweep; null = none."""
    name: Optional[str] = None
    """W&B run name; null = the run directory's name."""
    tags: list[str] = field(default_factory=list)
    """W&B run tags."""
    mode: Optional[str] = None
    """online, offline or disabled; null = wandb's default (the WANDB_MODE environment variable, else online)."""


@dataclass
class DeployCheckConfig:
    """Robot tasks: the exported controller in the deploy loop at the end of a run
    (``robo_ppo/deploy_check.py``); other tasks ignore it."""
    enabled: bool = True
    """Run the check after ``policy.onnx`` is written: prints the tracking table, writes deploy.json."""
    segments: int = 20
    """Random command segments (the kit's ``schedules.random_schedule``)."""
    seconds: float = 5.0
    """Seconds per segment."""
    seed: int = 0
    """Seed of the schedule and the harness."""
    goal: dict[str, float] = field(default_factory=lambda: {"vx": 0.15, "vy": 0.15, "yaw_rate": 0.2})
    """Command name -> largest mean absolute tracking error (m/s, rad/s) that meets the goal (and no fall)."""
    video: bool = True
    """Also film the kit's default schedule to deploy.mp4 (needs OpenGL; headless: MUJOCO_GL=egl)."""


@dataclass
class DivergenceConfig:
    """Robot tasks: when physics divergence stops a run (``robo_ppo/envs/robot_env.py`` detects it,
    resets the env and drops the step; ``physics/diverged`` in metrics.csv counts it)."""
    max_rate: float = 0.01
    """Largest fraction of an iteration's env steps that may diverge ..."""
    patience: int = 3
    """... before this many iterations in a row above it stop the run (one line naming the likely cause;
    the last good checkpoint is kept)."""


@dataclass
class TrainConfig:
    env: EnvConfig = field(default_factory=EnvConfig)
    algo: PPOConfig = field(default_factory=PPOConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    seed: int = 1
    """Seeds torch, the environments and evaluation."""
    total_timesteps: int = 1_000_000
    """Environment steps (summed over envs) to train for."""
    device: str = "auto"
    """auto (cuda if available, else cpu), cpu, cuda, cuda:1, ..."""
    compute: str = "auto"
    """Where the policy math of rollout and update runs: ``torch``, ``numpy`` (CPU
    only; 4-5x less per-call overhead for small MLPs, see docs/profile.md) or ``auto``
    (numpy on the CPU with the gymnasium/EnvPool engines, torch otherwise)."""
    torch_threads: int = 1
    """Threads of torch's intra-op pool and of numpy's BLAS (via threadpoolctl); 1 is
    fastest for small MLPs on few cores: idle BLAS/OpenMP threads spin and starve
    EnvPool's workers (docs/profile.md). 0 = the libraries' defaults."""
    update_threads: int = 0
    """torch intra-op threads during the PPO update only (0: ``torch_threads``). The CPU robot
    engine's threads idle while the update runs, so on 2 cores ``2`` halves the Go1's update
    (2.65 -> 1.4 s per iteration; docs/profile.md) without slowing the rollout."""
    resume: Optional[str] = None
    """Run directory (or checkpoint file) to continue from."""
    eval_interval: int = 10
    """Evaluate every this many iterations (0 = only at the end)."""
    eval_episodes: int = 10
    """Deterministic episodes per evaluation (one separate env each)."""
    checkpoint_interval: int = 50
    """Checkpoint every this many iterations (always at the end and on SIGINT/SIGTERM)."""
    keep_checkpoints: int = 3
    """Most recent checkpoints kept on disk."""
    progress: bool = True
    """Show a live progress bar."""
    tensorboard: bool = True
    """Write TensorBoard event files under tb/."""
    wandb: WandbConfig = field(default_factory=WandbConfig)
    """Weights & Biases logging (``wandb.enabled=true``); off by default."""
    export_onnx: bool = True
    """Write and verify policy.onnx at the end of training."""
    deploy_check: DeployCheckConfig = field(default_factory=DeployCheckConfig)
    """Robot tasks: run the exported controller in the deploy loop at the end (table, deploy.json, MP4)."""
    divergence: DivergenceConfig = field(default_factory=DivergenceConfig)
    """Robot tasks: the physics-divergence limit that stops a run."""
    memory_interval: int = 10
    """Write the process's memory (``rss_mb``, ``py_heap_blocks``) to metrics.csv every this many
    iterations (0 = never)."""
    debug: bool = False
    """Show full tracebacks for user errors."""


RENAMED_KEYS = {"backend": "engine"}
"""Top-level config keys renamed since runs were first saved: old name -> today's name."""


def upgrade_saved_config(config: Any) -> Any:
    """A run's saved config (a checkpoint's ``config``, a run directory's ``config.yaml``,
    as a plain dict) with today's key names; changed in place and returned.

    Runs saved before the simulator-engine group was named ``engine`` store it under
    ``backend`` (``backend: {name: mujoco, num_threads: 0}``). Resume, export and replay read
    ``config["engine"]``, so an old run keeps working only if the key is renamed on loading:
    this is the one place that does it (``runner.checkpoint.read_checkpoint`` calls it for
    every checkpoint). Key order is kept; a config that already has the new key, or is not a
    dict, is returned unchanged.
    """
    if not isinstance(config, dict):
        return config
    renames = {old: new for old, new in RENAMED_KEYS.items() if old in config and new not in config}
    if renames:
        items = [(renames.get(k, k), v) for k, v in config.items()]
        config.clear()
        config.update(items)
    return config


def register_configs() -> None:
    """Register the schema as ``train_schema`` (used by conf/train.yaml)."""
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)


def teacher_terms(config: Any) -> list[str]:
    """The privileged terms a run's actor reads (``env.task_params.teacher_obs`` of its config, a mapping or
    DictConfig; ``[]`` for a robot-side policy): a policy with any is a teacher, which no robot can run."""
    return list(((config.get("env") or {}).get("task_params") or {}).get("teacher_obs") or [])
