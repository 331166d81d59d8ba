"""The training loop: rollout -> GAE -> PPO update -> log / evaluate / checkpoint.

Read top to bottom: ``Trainer.__init__`` builds everything from the resolved
config, ``Trainer.train`` runs the iterations, ``_collect_rollout`` is the
env-stepping hot loop, ``state_dict`` is what a checkpoint holds.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import gymnasium as gym
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from threadpoolctl import threadpool_limits

import robo_ppo
from robo_ppo.algo.losses import explained_variance
from robo_ppo.algo.numpy_ppo import NumpyPPO
from robo_ppo.algo.ppo import PPO, LossSettings
from robo_ppo.envs import make_vec_env
from robo_ppo.errors import ConfigError, NonFiniteError, PhysicsDivergenceError
from robo_ppo.modules.actor_critic import build_actor_critic
from robo_ppo.modules.normalizer import RewardScaler, RunningMeanStd
from robo_ppo.modules.numpy_policy import NumpyActorCritic, UnsupportedModuleError
from robo_ppo.runner.checkpoint import FORMAT_VERSION, list_checkpoints, save_checkpoint, space_to_dict
from robo_ppo.runner.collectors import DeviceCollector, HostCollector, RolloutResult
from robo_ppo.runner.distributed import DistContext, cores_per_rank
from robo_ppo.runner.evaluate import run_episodes
from robo_ppo.runner.logger import COLUMNS, NullLogger, RunLogger, plot_learning_curve
from robo_ppo.runner.memory import memory_row
from robo_ppo.runner.provenance import environment
from robo_ppo.runner.storage import RolloutBuffer

log = logging.getLogger("robo_ppo")


def select_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; otherwise ``torch.device(name)``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name} but CUDA is not available; use device=cpu or device=auto")
    return dev


COMPUTE_CHOICES = ("auto", "torch", "numpy")


def select_compute(name: str, device: torch.device, engine: str) -> str:
    """Resolve ``compute`` from where the run happens: ``auto`` -> ``numpy`` on
    the CPU with a CPU engine (gymnasium, EnvPool), else ``torch``. Raises
    ConfigError for numpy off the CPU. Whether the numpy path can mirror the
    policy itself is decided when it is built (``Trainer.__init__``)."""
    if name not in COMPUTE_CHOICES:
        raise ConfigError(f"compute must be one of {', '.join(COMPUTE_CHOICES)}, got {name!r}")
    cpu_engine = engine in ("gymnasium", "envpool")
    if name == "auto":
        return "numpy" if device.type == "cpu" and cpu_engine else "torch"
    if name == "numpy" and not (device.type == "cpu" and cpu_engine):
        raise ConfigError(f"compute=numpy runs on the CPU with a CPU engine (gymnasium, envpool), "
                          f"but device is {device} and the engine {engine}; use compute=torch or auto")
    return name


def validate_config(cfg: DictConfig) -> None:
    """Checks the schema's types cannot express. Raises ConfigError."""
    a = cfg.algo
    checks = [
        (cfg.total_timesteps > 0, "total_timesteps must be > 0"),
        (a.num_steps > 0, "algo.num_steps must be > 0"),
        (a.num_minibatches > 0, "algo.num_minibatches must be > 0"),
        (a.num_envs * a.num_steps >= a.num_minibatches,
         "algo.num_envs * algo.num_steps must be >= algo.num_minibatches"),
        (a.update_epochs > 0, "algo.update_epochs must be > 0"),
        (0.0 < a.gamma <= 1.0, "algo.gamma must be in (0, 1]"),
        (0.0 <= a.gae_lambda <= 1.0, "algo.gae_lambda must be in [0, 1]"),
        (a.learning_rate > 0, "algo.learning_rate must be > 0"),
        (a.clip_coef > 0, "algo.clip_coef must be > 0"),
        (a.obs_clip > 0, "algo.obs_clip must be > 0"),
    ]
    for ok, msg in checks:
        if not ok:
            raise ConfigError(msg)


def rank_engine_config(engine_cfg: DictConfig, local_world_size: int) -> DictConfig:
    """The engine config of one of ``local_world_size`` ranks on a node: the
    ``num_threads: 0`` (one thread per core) of a CPU-threaded engine (EnvPool,
    native MuJoCo ``mujoco``) becomes this rank's share of the usable cores
    (``distributed.cores_per_rank``), so the ranks do not oversubscribe them."""
    if (local_world_size <= 1 or engine_cfg.name not in ("envpool", "mujoco")
            or engine_cfg.get("num_threads", 0) != 0):
        return engine_cfg
    out = engine_cfg.copy()
    out.num_threads = cores_per_rank(local_world_size)
    return out


REPEAT_WINDOW_S = 1.0
"""A stop signal this soon after the first is the same request delivered twice, not a second Ctrl-C."""


class StopOnSignal:
    """The SIGINT/SIGTERM handler of a training run: the first signal calls ``request_stop`` (the run
    finishes its iteration, checkpoints and writes its outputs); a repeat within ``REPEAT_WINDOW_S`` is
    ignored, since a supervisor may deliver one stop twice (GNU ``timeout`` without ``--foreground``
    signals the child and then its whole process group); a later one stops at once, as a second Ctrl-C
    does: SIGINT raises ``KeyboardInterrupt``, SIGTERM takes its default action (the process ends).

    Args:
        request_stop: called once, at the first signal.
        clock: seconds, monotonic (``time.monotonic``; a test passes its own).
    """

    def __init__(self, request_stop: Callable[[], None], clock: Callable[[], float] = time.monotonic):
        self._request_stop, self._clock = request_stop, clock
        self._first: Optional[float] = None

    def __call__(self, signum: int, frame: Any) -> None:
        now = self._clock()
        if self._first is None:
            self._first = now
            self._request_stop()
        elif now - self._first >= REPEAT_WINDOW_S:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)


class Trainer:
    """One PPO training run, or one rank of a data-parallel run.

    Args:
        cfg: the resolved ``TrainConfig`` (``robo_ppo.config``).
        run_dir: where checkpoints, tb/, metrics.csv and the plot go (rank 0 only).
        resume_state: a loaded checkpoint to continue from (``None`` = fresh).
        dist: this process's place in a ``torchrun`` job
            (``robo_ppo.runner.distributed``); ``None`` = a single process.
            Rank ``r`` seeds its envs ``seed + r * num_envs + i`` and torch
            ``seed + r``; the iteration's batch is ``world_size`` rollouts and
            ``global_step`` counts the env steps of all ranks.
        wandb_run: an open W&B run (``runner.logger.start_wandb``; rank 0
            only) that receives every metrics row; ``None`` = no W&B.

    Raises:
        ConfigError: invalid sizes, or a checkpoint of another world size.
    """

    def __init__(self, cfg: DictConfig, run_dir: Path, resume_state: Optional[dict] = None,
                 dist: Optional[DistContext] = None, wandb_run: Any = None):
        validate_config(cfg)
        self.cfg = cfg
        self.wandb_run = wandb_run
        self.dist = dist or DistContext()
        rank, world = self.dist.rank, self.dist.world_size
        self.run_dir = Path(run_dir)
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        self.ckpt_dir = self.run_dir / "checkpoints"
        self._default_threads = torch.get_num_threads()
        if cfg.torch_threads > 0:
            torch.set_num_threads(cfg.torch_threads)
            threadpool_limits(cfg.torch_threads, user_api="blas")  # numpy's BLAS (numpy compute path)
        self.device = self.dist.device if self.dist.backend == "nccl" else select_device(cfg.device)
        torch.manual_seed(cfg.seed + rank)
        a = cfg.algo
        self.env_seed = cfg.seed + rank * a.num_envs
        engine_cfg = rank_engine_config(cfg.engine, self.dist.local_world_size)
        self.envs = make_vec_env(cfg.env, engine_cfg, a.num_envs, device=self.device, seed=self.env_seed)
        self.eval_envs = None
        self.batch_size = a.num_envs * a.num_steps
        """Env steps of one rank's rollout."""
        self.steps_per_iteration = self.batch_size * world
        """Env steps of one iteration over all ranks (the update's batch)."""
        self.num_iterations = max(1, cfg.total_timesteps // self.steps_per_iteration)
        self.discrete = isinstance(self.envs.action_space, gym.spaces.Discrete)
        critic_obs_dim = getattr(self.envs, "critic_obs_dim", 0) or None
        self.policy = build_actor_critic(a, self.envs.obs_dim, self.envs.action_space,
                                         critic_obs_dim).to(self.device)
        self.compute = select_compute(cfg.compute, self.device, self.envs.engine)
        # the rollout calls normalize/act/get_value/update_normalizer on this object:
        # the torch module itself, or its numpy twin on the same parameter memory
        act_dim = self.policy.act_dim
        self.buffer = RolloutBuffer(a.num_steps, a.num_envs, self.envs.obs_dim, act_dim, self.discrete,
                                    self.device, critic_obs_dim=critic_obs_dim)
        mirror = self._env_mirror() if LossSettings(a).uses_mirror else None
        twin = None
        if self.compute == "numpy":
            try:  # the twin refuses a policy it cannot mirror exactly, before touching it
                twin = NumpyActorCritic(self.policy)
            except UnsupportedModuleError as e:
                if cfg.compute == "numpy":
                    raise ConfigError(f"compute=numpy cannot train this policy: {e}; use compute=torch "
                                      "or compute=auto") from e
                log.info("compute=auto: %s; using compute=torch", e)
                self.compute = "torch"
        if twin is not None:
            self.rollout_policy = twin
            self.ppo = NumpyPPO(self.rollout_policy, a, self.num_iterations)
            self.collector = HostCollector(self.envs, self.rollout_policy, self.buffer, act_dim, self.discrete)
        else:
            self.rollout_policy = self.policy
            self.ppo = PPO(self.policy, a, self.num_iterations)
            self.collector = DeviceCollector(self.envs, self.policy, self.buffer, act_dim, self.discrete)
        if mirror is not None:
            self.ppo.set_mirror(*mirror)
        self.reward_scaler = (RewardScaler(a.num_envs, a.gamma, a.reward_clip).to(self.device)
                              if a.normalize_reward else None)
        self.iteration = 0
        self.global_step = 0
        self.recent_returns: deque[float] = deque(maxlen=100)
        self.last_eval: Optional[dict[str, float]] = None
        self.environments: list[dict[str, Any]] = []
        """Where each part of the run trained: ``{"from_step": N, **provenance.environment()}`` per start
        or resume, oldest first; checkpointed, and exported as the ONNX metadata's ``train_environments``."""
        self._stop_requested = False
        self._diverging = 0
        """Iterations in a row whose divergence rate was above ``divergence.max_rate``."""
        self._warned_divergence = False
        self.update_threads = int(cfg.update_threads)
        """torch threads of the update (0: ``torch_threads``); a data-parallel rank caps it at its cores."""
        self.clock_envs = a.num_envs * world
        """Envs that step together in training (all ranks): a task's curricula count their env steps."""
        self.envs.set_training_clock(0, self.clock_envs)
        self.next_obs = self.envs.reset(seed=self.env_seed)
        self.next_critic_obs = self.envs.last_critic_obs() if critic_obs_dim else None
        if self.dist.enabled:
            self._join_data_parallel()
        if resume_state is not None:
            self._load_state(resume_state)
        self.environments.append({"from_step": self.global_step, **environment()})
        self.dist.broadcast_module_(self.policy)  # every rank starts from rank 0's parameters
        if resume_state is None and a.normalize_obs:
            self._seed_normalizer()

    def _env_mirror(self) -> tuple:
        """The env's ``(obs, action)`` mirror maps for the symmetry loss and augmentation
        (``algo.symmetry_coef > 0``, ``algo.symmetry_augmentation``).

        Raises:
            ConfigError: the env has no mirror maps (only robot tasks do) or the policy is discrete.
        """
        if not hasattr(self.envs, "mirror") or self.discrete:
            raise ConfigError(f"algo.symmetry_coef > 0 and algo.symmetry_augmentation need a robot task "
                              f"(env=<robot>_joystick) whose mirror maps come from the model; env {self.cfg.env.id} "
                              f"has none: set algo.symmetry_coef=0 algo.symmetry_augmentation=false")
        return self.envs.mirror()

    def _join_data_parallel(self) -> None:
        """Hook the ranks together (``robo_ppo/runner/distributed.py``):
        gradient and KL means in the update, observation moments and reward
        statistics over all ranks' data (every ``RunningMeanStd`` of the policy:
        the actor's normalizer and an asymmetric critic's own).

        The ranks of a node share its cores: the update's torch threads
        (``update_threads``, 2 in the robot env files) are capped at this rank's
        share (``DistContext.cores_per_rank``), as its engine threads are
        (``rank_engine_config``); the config keeps the configured value."""
        d = self.dist
        self.ppo.data_parallel(d.grad_mean_, d.scalar_mean)
        for module in self.policy.modules():
            if isinstance(module, RunningMeanStd):
                module.batch_sync = d.merge_moments_across_ranks
        if self.reward_scaler is not None:
            self.reward_scaler.step_sums_sync = d.sum_across_ranks
        share = d.cores_per_rank
        if self.update_threads > share:
            self.update_threads = share
        if d.is_main:
            a = self.cfg.algo
            log.info("data-parallel PPO: %d ranks x %d envs x %d steps = %d env steps per update; "
                     "minibatches of %d x %d samples", d.world_size, a.num_envs, a.num_steps,
                     self.steps_per_iteration, d.world_size, self.batch_size // a.num_minibatches)
            log.info("data-parallel threads per rank (%d ranks on this node, %d core(s) each): engine %s, "
                     "torch %d, update %s", d.local_world_size, share,
                     rank_engine_config(self.cfg.engine, d.local_world_size).get("num_threads", "-"),
                     torch.get_num_threads(), self.update_threads or torch.get_num_threads())

    def _seed_normalizer(self) -> None:
        """Seed the observation statistics of a fresh run, so that its first
        rollout is normalized too: fold in the reset observations (as
        Baselines' VecNormalize does), then the observations of one warm-up
        rollout of the initial policy, and reset the envs again with the
        run's seed. The warm-up is needed because the statistics stay fixed
        for a whole rollout (VecNormalize updates them every step): reset
        states alone have almost no spread, and with them 61-100% of the first
        rollout's observation entries would sit at the clip (measured on
        HalfCheetah, Hopper, Walker2d; 1-25% with the unseeded mean 0 /
        variance 1, <0.3% after the warm-up). The warm-up is not trained on
        and not counted in ``global_step``; it draws its sampling noise from
        torch's RNG like any rollout. A resumed run takes the statistics from
        its checkpoint instead."""
        self.policy.update_normalizer(self.next_obs, self.next_critic_obs)
        self.collector.collect(self.next_obs, self.next_critic_obs)
        self.next_obs = self.envs.reset(seed=self.env_seed)
        self.next_critic_obs = self.envs.last_critic_obs() if self.policy.critic_obs_dim else None

    # ----------------------------------------------------------- the loop
    def request_stop(self) -> None:
        """Finish the current iteration, checkpoint, and return from ``train``."""
        self._stop_requested = True

    def train(self, on_iteration: Optional[Callable[[Trainer], None]] = None) -> dict[str, Any]:
        """Run until ``total_timesteps`` or a stop request. Returns a summary dict.

        Raises:
            NonFiniteError: NaN/inf in observations, rewards, losses or
                parameters; the last good checkpoint on disk is left intact.
        """
        cfg, main = self.cfg, self.dist.is_main
        logger = (RunLogger(self.run_dir, tensorboard=cfg.tensorboard, progress=cfg.progress,
                            total_steps=self.num_iterations * self.steps_per_iteration,
                            initial_step=self.global_step,
                            extra_columns=self._extra_columns(),
                            wandb_run=self.wandb_run)
                  if main else NullLogger())
        previous = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
        self._install_signal_handlers()
        start_time = time.perf_counter()
        start_step = self.global_step
        stop = self._stop_agreed()
        try:
            while self.iteration < self.num_iterations and not stop:
                self.iteration += 1
                self.ppo.begin_iteration(self.iteration)
                t0 = time.perf_counter()
                rollout = self._collect_rollout()
                t_rollout = time.perf_counter() - t0
                stats = self._update()
                self._check_parameters()
                row = self._row(stats, rollout, start_time, start_step, t_rollout)
                last = self.iteration == self.num_iterations
                if main and ((cfg.eval_interval > 0 and self.iteration % cfg.eval_interval == 0) or last):
                    self.last_eval = self.evaluate()
                    row["eval_return"] = self.last_eval["mean"]
                    row["eval_return_std"] = self.last_eval["std"]
                logger.log(row)
                if on_iteration is not None:
                    on_iteration(self)
                stop = self._stop_agreed()  # one decision for all ranks: they checkpoint together
                if (self.iteration % cfg.checkpoint_interval == 0 or last or stop):
                    self.save()
        finally:
            logger.close()
            signal.signal(signal.SIGINT, previous[0])
            signal.signal(signal.SIGTERM, previous[1])
        elapsed = time.perf_counter() - start_time
        finished = self.iteration >= self.num_iterations
        if finished and main:
            plot_learning_curve(self.run_dir / "metrics.csv", self.run_dir / "learning_curve.png",
                                title=f"{cfg.env.id} PPO")
        checkpoints = list_checkpoints(self.ckpt_dir) if main else []
        return {"iterations": self.iteration, "global_step": self.global_step, "finished": finished,
                "wall_time_s": elapsed,
                "SPS": (self.global_step - start_step) / max(elapsed, 1e-9),
                "eval": self.last_eval,
                "checkpoint": str(checkpoints[-1]) if checkpoints else None}

    def _extra_columns(self) -> tuple[str, ...]:
        """metrics.csv columns of this run: the update's diagnostics beyond ``COLUMNS`` (``bounds_loss``
        where ``algo.bounds_loss_coef > 0``), ``reward/<term>``, ``physics/diverged`` where the env checks
        its physics (robot tasks), and the env's statistics (``stat_names``, e.g. ``terrain/level``)."""
        losses = tuple(k for k in self.ppo.kernel.stat_keys if k not in COLUMNS)
        terms = tuple(f"reward/{t}" for t in getattr(self.envs, "reward_terms", ()))
        return (losses + terms + (("physics/diverged",) if self.envs.checks_divergence else ())
                + tuple(getattr(self.envs, "stat_names", ())))

    def _stop_agreed(self) -> bool:
        """Whether to stop after this iteration: a stop was requested here or,
        in a data-parallel run, on any rank (one all-reduce per iteration)."""
        return self.dist.any_rank(self._stop_requested)

    def _install_signal_handlers(self) -> None:
        handler = StopOnSignal(self.request_stop)
        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)

    # ------------------------------------------------------------ rollout
    def _collect_rollout(self) -> RolloutResult:
        """Fill the buffer with one rollout (``self.collector``), check it is finite,
        scale its rewards. Returns the collector's ``RolloutResult``.

        Rewards are scaled after the rollout with per-step semantics
        (``RewardScaler.scale_rollout``); the buffer keeps normalized
        observations, so the update sees exactly what the behaviour policy saw.
        """
        buf = self.buffer
        result = self.collector.collect(self.next_obs, self.next_critic_obs)
        self.next_obs, self.next_critic_obs = result.next_obs, result.next_critic_obs
        self.global_step += self.steps_per_iteration
        finite = torch.isfinite(buf.obs).all() & torch.isfinite(buf.rewards).all()
        if buf.critic_obs is not None:
            finite &= torch.isfinite(buf.critic_obs).all()
        if not bool(finite):
            raise NonFiniteError(
                f"the environment returned a non-finite observation or reward in iteration "
                f"{self.iteration}; the run stopped without checkpointing it (the last good "
                f"checkpoint in {self.ckpt_dir} is intact): check the task's model/reward")
        if self.reward_scaler is not None:
            buf.rewards.copy_(self.reward_scaler.scale_rollout(buf.rewards, buf.terminated | buf.truncated))
        self.recent_returns.extend(result.episode_returns)
        if result.diverged is not None:
            self._check_divergence(result.diverged)
        return result

    def _check_divergence(self, diverged: int) -> None:
        """Stop the run (``PhysicsDivergenceError``, before this iteration is checkpointed) when more than
        ``divergence.max_rate`` of the env steps diverged in ``divergence.patience`` iterations in a
        row (on any rank). The diverged steps themselves were already reset and dropped by the env and
        the buffer."""
        d = self.cfg.divergence
        rate = diverged / self.batch_size
        if diverged and not self._warned_divergence:
            self._warned_divergence = True
            log.warning("the physics diverged in %d env steps of iteration %d: those envs were reset and the steps "
                        "left out of the update (counted in metrics.csv: physics/diverged; reported once)",
                        diverged, self.iteration)
        self._diverging = self._diverging + 1 if rate > d.max_rate else 0
        if self.dist.any_rank(self._diverging >= d.patience):
            raise PhysicsDivergenceError(
                f"the physics diverged in {rate:.1%} of the env steps of iteration {self.iteration} (more than "
                f"divergence.max_rate={d.max_rate:g} for {d.patience} iterations in a row): "
                f"{self.envs.divergence_hint()}; the last good checkpoint in {self.ckpt_dir} is intact")

    def _update(self) -> dict[str, float]:
        a = self.cfg.algo
        with torch.no_grad():
            advantages, returns = self.buffer.finish(self.buffer.last_values, a.gamma, a.gae_lambda)
        batch = self.buffer.flatten(advantages, returns)
        if not self.discrete:
            batch["old_log_std"] = self.policy.log_std.detach().clone()
        interval = int(a.kernel_check_interval)
        if interval > 0 and (self.iteration - 1) % interval == 0:
            self.ppo.check_kernel(batch, self.iteration)  # numpy path only; KernelMismatchError stops the run
        if self.update_threads > 0:   # more intra-op threads while the env threads idle
            torch.set_num_threads(self.update_threads)
        try:
            stats = self.ppo.update(batch)
        finally:
            if self.update_threads > 0:
                torch.set_num_threads(self.cfg.torch_threads if self.cfg.torch_threads > 0 else self._default_threads)
        stats["explained_variance"] = explained_variance(batch["values"], batch["returns"])
        return stats

    def _check_parameters(self) -> None:
        for name, p in self.policy.named_parameters():
            if not bool(torch.isfinite(p).all()):
                raise NonFiniteError(
                    f"parameter {name} became non-finite in iteration {self.iteration}; the run "
                    f"stopped (last good checkpoint in {self.ckpt_dir} is intact): lower "
                    "algo.learning_rate or algo.max_grad_norm")

    def _row(self, stats, rollout: RolloutResult, start_time, start_step, t_rollout) -> dict[str, Any]:
        elapsed = time.perf_counter() - start_time
        row = dict(stats)
        row.update({
            "iteration": self.iteration, "global_step": self.global_step,
            "wall_time": round(elapsed, 3),
            "SPS": (self.global_step - start_step) / max(elapsed, 1e-9),
            "rollout_SPS": self.steps_per_iteration / max(t_rollout, 1e-9),
            "episodic_return": float(np.mean(rollout.episode_returns)) if rollout.episode_returns else "",
            "episodic_length": float(np.mean(rollout.episode_lengths)) if rollout.episode_lengths else "",
            "recent_return": float(np.mean(self.recent_returns)) if self.recent_returns else None,
        })
        for term, value in (rollout.reward_terms or {}).items():
            row[f"reward/{term}"] = value
        if rollout.diverged is not None:
            row["physics/diverged"] = rollout.diverged
        if getattr(self.envs, "stat_names", ()):   # the task's statistics at the end of the rollout
            row.update(self.envs.stats())
        interval = self.cfg.memory_interval
        if interval > 0 and (self.iteration % interval == 0 or self.iteration == 1):
            row.update(memory_row())
        return row

    # --------------------------------------------------------- evaluation
    def evaluate(self, episodes: Optional[int] = None) -> dict[str, float]:
        """Deterministic returns on separate envs with the normalizer frozen.

        One env per episode, seeded ``seed + 1_000_003`` so evaluation never
        shares episodes with training; a task with curricula is evaluated at
        the training clock (``VecEnv.set_training_clock``). Returns mean, std, min, max of raw returns.
        """
        n = episodes or self.cfg.eval_episodes
        if self.eval_envs is None or self.eval_envs.num_envs != n:
            if self.eval_envs is not None:
                self.eval_envs.close()
            self.eval_envs = make_vec_env(self.cfg.env, self.cfg.engine, n, device=self.device,
                                          seed=self.cfg.seed + 1_000_003)
        # the task at the training clock (its curricula), whatever the eval envs did before: a resumed
        # run evaluates as an uninterrupted one
        self.eval_envs.set_training_clock(self.iteration * int(self.cfg.algo.num_steps), self.clock_envs)
        returns, lengths = run_episodes(self.eval_envs, self.policy, seed=self.cfg.seed + 1_000_003)
        return {"mean": float(returns.mean()), "std": float(returns.std()), "min": float(returns.min()),
                "max": float(returns.max()), "mean_length": float(lengths.mean())}

    # -------------------------------------------------------- checkpoints
    RANK_KEYS = ("rng", "env_state", "next_obs", "next_critic_obs", "reward_scaler", "recent_returns")
    """Checkpoint entries that differ between the ranks of a data-parallel run."""

    def _rank_state(self) -> dict[str, Any]:
        """This rank's part of a checkpoint (``RANK_KEYS``)."""
        try:
            env_state = self.envs.get_state()
        except NotImplementedError:
            env_state = None
        rng = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "rng": rng,
            "env_state": env_state,
            "next_obs": self.next_obs.cpu(),
            "next_critic_obs": None if self.next_critic_obs is None else self.next_critic_obs.cpu(),
            "reward_scaler": None if self.reward_scaler is None else self.reward_scaler.state_dict(),
            "recent_returns": list(self.recent_returns),
        }

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the run exactly (``torch.load(weights_only=True)``-safe).

        The top level holds rank 0's ``RANK_KEYS``; a data-parallel run adds
        ``world_size`` and ``other_ranks`` (ranks 1.., gathered from every
        rank: a collective, so every rank calls this at the same iteration)."""
        ranks = self.dist.gather_objects(self._rank_state())
        state = {
            "format_version": FORMAT_VERSION,
            "robo_ppo_version": robo_ppo.__version__,
            "config": OmegaConf.to_container(self.cfg, resolve=True, enum_to_str=True),
            "model": self.policy.state_dict(),
            "ppo": self.ppo.state_dict(),
            "iteration": self.iteration,
            "global_step": self.global_step,
            **ranks[0],
            "spaces": {"observation": space_to_dict(self.envs.observation_space),
                       "action": space_to_dict(self.envs.action_space),
                       "critic_obs_dim": self.policy.critic_obs_dim},
            "env_meta": self.envs.metadata(),
            "last_eval": self.last_eval,
            "environments": self.environments,
        }
        if self.dist.world_size > 1:
            state["world_size"] = self.dist.world_size
            state["other_ranks"] = ranks[1:]
        return state

    def _load_state(self, state: dict[str, Any]) -> None:
        """Restore a checkpoint: the shared learner state, then this rank's part.

        Raises:
            ConfigError: the checkpoint was written by another number of ranks.
        """
        saved_world = int(state.get("world_size", 1))
        if saved_world != self.dist.world_size:
            raise ConfigError(
                f"the checkpoint was written by a run of {saved_world} rank(s), this one has "
                f"{self.dist.world_size}: resume it with the same number of ranks "
                f"(torchrun --nnodes x --nproc_per_node = {saved_world}"
                f"{'' if saved_world > 1 else ', or without torchrun'}), so every rank continues its own envs")
        self.policy.load_state_dict(state["model"])
        self.ppo.load_state_dict(state["ppo"])
        self.iteration = int(state["iteration"])
        self.global_step = int(state["global_step"])
        self.envs.set_training_clock(self.iteration * int(self.cfg.algo.num_steps), self.clock_envs)
        self.last_eval = state["last_eval"]
        self.environments = list(state.get("environments") or [])   # none in checkpoints before 2026-12-07
        mine = state if self.dist.rank == 0 else state["other_ranks"][self.dist.rank - 1]
        if self.reward_scaler is not None and mine["reward_scaler"] is not None:
            self.reward_scaler.load_state_dict(mine["reward_scaler"])
        torch.set_rng_state(mine["rng"]["torch"])
        if "cuda" in mine["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state(mine["rng"]["cuda"], self.device)
        self.recent_returns.extend(mine["recent_returns"])
        if mine["env_state"] is not None:
            try:
                self.envs.set_state(mine["env_state"])
                self.next_obs = mine["next_obs"].to(self.device)
                if mine.get("next_critic_obs") is not None:
                    self.next_critic_obs = mine["next_critic_obs"].to(self.device)
            except NotImplementedError:
                pass  # engines without snapshots continue from freshly reset envs

    def save(self) -> Optional[Path]:
        """Write a checkpoint atomically into ``run_dir/checkpoints`` (rank 0;
        the other ranks of a data-parallel run hand it their part and return ``None``)."""
        state = self.state_dict()
        if not self.dist.is_main:
            return None
        return save_checkpoint(state, self.ckpt_dir, keep=self.cfg.keep_checkpoints)

    def close(self) -> None:
        self.envs.close()
        if self.eval_envs is not None:
            self.eval_envs.close()
