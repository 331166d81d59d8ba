"""``robo-ppo-train``: train PPO from the Hydra config tree in ``conf/``.

    robo-ppo-train env=halfcheetah                    # one run
    robo-ppo-train env=hopper algo.learning_rate=1e-4 seed=3
    robo-ppo-train resume=outputs/2026-11-23/10-00-00  # continue a run
    robo-ppo-train -m seed=1,2,3 env=hopper,walker2d  # Hydra multirun
    robo-ppo-train -m hydra/launcher=joblib seed=1,2  # ... two runs at a time (the sweep extra)
    torchrun --nproc_per_node=2 -m robo_ppo.train env=halfcheetah  # data-parallel (docs/distributed.md)
"""

from __future__ import annotations

import json
import logging
import math
import sys
from pathlib import Path
from typing import Optional

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from robo_ppo.config import TrainConfig, register_configs, teacher_terms
from robo_ppo.deploy_kit.headless import default_gl
from robo_ppo.errors import CheckpointError, ConfigError, ExportError, report_errors
from robo_ppo.hydra_utils import run_app
from robo_ppo.runner.distributed import DistContext, env_rank, init_distributed, shutdown_distributed

log = logging.getLogger("robo_ppo")
GROUPS = {"env": "name", "algo": "loss", "engine": "name"}
"""Config groups, and the key that tells which choice of the group a run used."""
FIXED_ON_RESUME = ("algo.num_envs", "algo.actor_hidden_sizes", "algo.critic_hidden_sizes", "env.id",
                   "env.name", "env.envpool_id", "env.brax_id", "env.task", "env.task_params", "env.kwargs",
                   "env.terrain", "engine.name", "engine.pipeline")
"""Keys a resumed run cannot change: the checkpoint's tensors, simulator
snapshot and reward-scaler state are shaped by them (a key or any key under it)."""


def _fixed_key(key: str) -> str | None:
    for fixed in FIXED_ON_RESUME:
        if key == fixed or key.startswith(fixed + "."):
            return fixed
    return None


def resume_config(cfg: DictConfig, saved: dict, overrides: list[str]) -> DictConfig:
    """The saved run's config with this invocation's explicit key overrides on top.

    ``resume=DIR total_timesteps=2000000`` extends a run; changing a config
    group (``env=...``) or a key the checkpoint is shaped by
    (``FIXED_ON_RESUME``, e.g. ``algo.num_envs``) is refused because the
    checkpoint would not fit.

    Raises:
        CheckpointError: the checkpoint's config is not a robo_ppo config.
        ConfigError: an override changes a group or a fixed key, or does not
            fit the schema.
    """
    try:
        merged = OmegaConf.merge(OmegaConf.structured(TrainConfig), saved)
        names = {g: saved[g][k] for g, k in GROUPS.items()}
    except Exception as e:  # noqa: BLE001 - a foreign or damaged config in the file
        raise CheckpointError(f"the checkpoint's config does not fit robo_ppo's schema ({type(e).__name__}: "
                              f"{(str(e).splitlines() or [''])[0][:200]}); resume from a checkpoint "
                              "written by robo-ppo-train") from None
    for ov in overrides:
        key, _, value = ov.lstrip("+~").partition("=")
        if key == "resume" or key.startswith("hydra."):
            continue
        if key in GROUPS:
            which = GROUPS[key]
            if names[key] != cfg[key][which]:
                used = f"{key}={names[key]}" if which == "name" else f"{key}.{which}={names[key]}"
                raise ConfigError(f"cannot change {key} when resuming (run used {used}); drop the "
                                  f"{key}= override")
            continue
        try:
            updated = OmegaConf.merge(merged, OmegaConf.from_dotlist([f"{key}={value}"]))
        except Exception as e:  # noqa: BLE001 - omegaconf's validation errors
            raise ConfigError(f"override {ov!r} does not fit the resumed run's config: "
                              f"{(str(e).splitlines() or [''])[0]}") from None
        fixed = _fixed_key(key)
        if fixed is not None and OmegaConf.select(updated, fixed) != OmegaConf.select(merged, fixed):
            was = OmegaConf.select(merged, fixed)
            was = OmegaConf.to_container(was) if OmegaConf.is_config(was) else was
            raise ConfigError(f"cannot change {fixed} when resuming (the run used {fixed}={was}; the "
                              f"checkpoint is shaped by it): drop the {key}= override, or start a new run")
        merged = updated
    merged.resume = cfg.resume
    return merged


def check_config(cfg: DictConfig) -> None:
    """Values the schema's types admit but a run cannot use; one ``ConfigError``
    naming the key and the accepted values. (The trainer checks the rollout
    and optimisation sizes itself: ``runner.trainer.validate_config``.)"""
    import torch

    from robo_ppo.modules.actor_critic import ACTIVATIONS

    def need(ok: bool, msg: str) -> None:
        if not ok:
            raise ConfigError(msg)

    if cfg.device != "auto":
        try:
            torch.device(cfg.device)
        except (RuntimeError, ValueError):
            raise ConfigError(f"device must be auto, cpu, cuda or cuda:<index>, got {cfg.device!r}") from None
    need(cfg.seed >= 0, f"seed must be >= 0, got {cfg.seed}")
    need(cfg.torch_threads >= 0, f"torch_threads must be >= 0 (0 = the libraries' defaults), got {cfg.torch_threads}")
    need(cfg.update_threads >= 0, f"update_threads must be >= 0 (0 = torch_threads), got {cfg.update_threads}")
    need(cfg.eval_interval >= 0, f"eval_interval must be >= 0 (0 = only at the end), got {cfg.eval_interval}")
    need(cfg.eval_episodes >= 1, f"eval_episodes must be >= 1, got {cfg.eval_episodes}")
    need(cfg.checkpoint_interval >= 1, f"checkpoint_interval must be >= 1 (iterations), got {cfg.checkpoint_interval}")
    need(cfg.keep_checkpoints >= 0, f"keep_checkpoints must be >= 0 (0 = keep all), got {cfg.keep_checkpoints}")
    need(cfg.engine.num_threads >= 0, f"engine.num_threads must be >= 0 (0 = one per core), "
                                      f"got {cfg.engine.num_threads}")
    need(0.0 < cfg.divergence.max_rate <= 1.0, f"divergence.max_rate must be in (0, 1] (a fraction of env steps), "
                                               f"got {cfg.divergence.max_rate}")
    need(cfg.divergence.patience >= 1, f"divergence.patience must be >= 1 (iterations), got {cfg.divergence.patience}")
    need(cfg.memory_interval >= 0, f"memory_interval must be >= 0 (0 = never), got {cfg.memory_interval}")
    w = cfg.wandb
    need(w.mode in (None, "online", "offline", "disabled"),
         f"wandb.mode must be online, offline, disabled or null (wandb's default), got {w.mode!r}")
    need(bool(w.project.strip()), "wandb.project must be a non-empty W&B project name")
    a = cfg.algo
    for key, value in a.items():
        if isinstance(value, float):
            need(math.isfinite(value), f"algo.{key} must be a finite number, got {value}")
    need(a.activation in ACTIVATIONS, f"algo.activation must be one of {', '.join(ACTIVATIONS)}, "
                                      f"got {a.activation!r}")
    for key in ("actor_hidden_sizes", "critic_hidden_sizes"):
        need(all(int(n) >= 1 for n in a[key]), f"algo.{key} must be layer widths >= 1, got {list(a[key])}")
    for key in ("max_grad_norm", "vf_clip_coef", "reward_clip", "kl_target", "kl_coef_init", "desired_kl"):
        need(a[key] > 0, f"algo.{key} must be > 0, got {a[key]}")
    need(a.adam_eps >= 0, f"algo.adam_eps must be >= 0, got {a.adam_eps}")
    need(a.vf_coef >= 0, f"algo.vf_coef must be >= 0, got {a.vf_coef}")
    need(a.bounds_loss_coef >= 0, f"algo.bounds_loss_coef must be >= 0 (0 = off), got {a.bounds_loss_coef}")
    need(a.symmetry_coef >= 0, f"algo.symmetry_coef must be >= 0 (0 = off), got {a.symmetry_coef}")
    need(not a.symmetry_augmentation or a.loss == "clip",
         f"algo.symmetry_augmentation needs the clipped surrogate: set algo.loss=clip (got {a.loss})")
    need(a.target_kl is None or a.target_kl > 0, f"algo.target_kl must be > 0 or null, got {a.target_kl}")
    need(0 < a.lr_min <= a.lr_max, f"algo.lr_min and algo.lr_max must satisfy 0 < lr_min <= lr_max, "
                                   f"got {a.lr_min} and {a.lr_max}")


def prepare_resume_state(state: dict) -> dict:
    """A checkpoint without a simulator snapshot (an engine that cannot take
    one) resumes from freshly reset envs: say so, and restart the per-env
    discounted returns of the reward scaler with them, so no episode carries
    returns of another."""
    if state.get("env_state") is None:
        engine = (state.get("env_meta") or {}).get("engine") or state["config"]["engine"]["name"]
        log.info("the checkpoint holds no snapshot of the %s engine: its envs restart from fresh "
                 "episodes (the seed's first ones), with the episode accumulators reset", engine)
        for part in [state, *state.get("other_ranks", [])]:  # rank 0's, then a data-parallel run's others
            scaler = part.get("reward_scaler")
            if scaler is not None and "returns" in scaler:
                scaler["returns"] = scaler["returns"].clone().zero_()
    return state


def run(cfg: DictConfig, run_dir: Path, dist: Optional[DistContext] = None) -> dict:
    """Train (or resume) with a composed config; returns the trainer's summary.

    ``dist``: this process's place in a ``torchrun`` job (``None`` = a single
    process); only rank 0 writes ``config.yaml``, the ONNX file and ``summary.json``,
    and logs to W&B (``wandb.enabled``).

    Raises:
        ConfigError, CheckpointError: bad config or resume file; ConfigError
            also when W&B is enabled but not installed or cannot start.
    """
    from robo_ppo.runner.checkpoint import load_checkpoint

    dist = dist or DistContext()

    state = None
    if cfg.resume:
        state = load_checkpoint(cfg.resume)
        overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
        cfg = resume_config(cfg, state["config"], overrides)
        log.info("resuming from %s at step %d", state["path"], state["global_step"])
        state = prepare_resume_state(state)
    check_config(cfg)
    wandb_run = None
    if dist.is_main and cfg.wandb.enabled:
        from robo_ppo.runner.logger import start_wandb

        wandb_run = start_wandb(cfg, run_dir)
    try:
        return _train(cfg, run_dir, state, dist, wandb_run)
    except BaseException:
        if wandb_run is not None:
            wandb_run.finish(exit_code=1)
        raise


def _train(cfg: DictConfig, run_dir: Path, state: Optional[dict], dist: DistContext, wandb_run) -> dict:
    """``run`` after the config is settled: train, export, write the summary
    (rank 0), and close the W&B run when there is one.

    A run stopped by SIGINT/SIGTERM (``summary["finished"]`` false) keeps its
    outputs: ``learning_curve.png`` (plotted here; the trainer plots a finished
    run), ``policy.onnx`` exported from its last checkpoint, and ``summary.json``
    with ``"interrupted": true``. Only a robot task's deploy check is skipped (one
    log line says how to run it). The trainer has put the previous signal
    handlers back by then, so a second Ctrl-C during the export stops at once
    (the exporter writes atomically: no half-written ``policy.onnx``).

    ``summary.json`` is written as soon as training ends, then again with the
    export's and the deploy check's results: an export that fails for any reason
    (``ExportError``: recorded as ``onnx_error`` and raised after; anything else:
    raised at once) leaves the run's summary beside its checkpoints."""
    from robo_ppo.runner.trainer import Trainer

    if dist.is_main:
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    trainer = Trainer(cfg, run_dir, resume_state=state, dist=dist, wandb_run=wandb_run)
    try:
        if dist.is_main:
            _write_environment(run_dir, trainer.environments[-1])
        summary = trainer.train()
    finally:
        trainer.close()
    if not dist.is_main:
        return summary
    finished = summary["finished"]
    if not finished:
        summary["interrupted"] = True
        log.info("stopped at iteration %d (%d env steps); writing the run's outputs from its last checkpoint "
                 "%s (Ctrl-C again stops at once)", summary["iterations"], summary["global_step"],
                 summary["checkpoint"])
    # first, for a finished run too: a second Ctrl-C or an unexpected error from here on still leaves it
    _write_summary(run_dir, summary)
    if not finished:
        _plot_stopped_run(cfg, run_dir)
    export_error = None
    teacher = teacher_terms(cfg)
    if cfg.export_onnx and teacher:
        log.info("not exported: a teacher policy (env.task_params.teacher_obs: %s) sees what a robot cannot "
                 "measure", teacher)
    elif cfg.export_onnx and summary["checkpoint"]:
        try:
            # imports onnx (seconds) inside the try: a second Ctrl-C may land there
            from robo_ppo.export import export_checkpoint

            report = export_checkpoint(summary["checkpoint"], run_dir / "policy.onnx")
            summary["onnx"] = str(report["path"])
            summary["onnx_max_abs_diff"] = report["max_abs_diff"]
        except ExportError as e:  # the run itself is saved: record, then report the failure
            summary["onnx_error"] = str(e)
            export_error = e
        except KeyboardInterrupt:  # a second Ctrl-C: keep the summary, then stop
            summary["onnx_error"] = (f"export interrupted; export later with robo-ppo-export "
                                     f"checkpoint={summary['checkpoint']}")
            _write_summary(run_dir, summary)
            raise
    if "onnx" in summary and cfg.env.get("task") and cfg.deploy_check.enabled:
        if finished:
            summary["deploy"] = _deploy_check(cfg, run_dir, summary["onnx"])
        else:
            c = cfg.deploy_check
            log.info("deploy check skipped (the run was stopped); run it with `python export/deploy.py %s "
                     "--schedule random --segments %d --seed %d`", summary["onnx"], c.segments, c.seed)
    _write_summary(run_dir, summary)
    log.info("%s: %s", "done" if finished else "stopped", json.dumps(summary))
    if wandb_run is not None:
        from robo_ppo.runner.logger import finish_wandb

        finish_wandb(wandb_run, run_dir, summary, failed=export_error is not None)
    if export_error is not None:
        raise export_error
    return summary


def _write_environment(run_dir: Path, record: dict) -> None:
    """``environment.json``: the source commit, library versions and CPU this run trains on
    (``robo_ppo.runner.provenance``), to tell apart two runs of one command that differ. ``record``
    is the trainer's own for this part of the run (``Trainer.environments[-1]``), without its step."""
    (run_dir / "environment.json").write_text(
        json.dumps({k: v for k, v in record.items() if k != "from_step"}, indent=2))


def _write_summary(run_dir: Path, summary: dict) -> None:
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))


def _plot_stopped_run(cfg: DictConfig, run_dir: Path) -> None:
    """``learning_curve.png`` of a run stopped before its end (the trainer plots only a finished run),
    when ``metrics.csv`` has a row. A failure is logged, not raised: the run is saved."""
    from robo_ppo.runner.logger import plot_learning_curve

    metrics = run_dir / "metrics.csv"
    try:
        with open(metrics) as f:
            if sum(1 for line in f if line.strip()) < 2:  # the header alone: nothing to plot
                return
        plot_learning_curve(metrics, run_dir / "learning_curve.png", title=f"{cfg.env.id} PPO")
    except FileNotFoundError:
        return
    except Exception as e:  # noqa: BLE001 - matplotlib's errors, an unreadable file
        log.warning("learning_curve.png not written: %s: %s", type(e).__name__, e)


def _deploy_check(cfg: DictConfig, run_dir: Path, onnx_path: str) -> dict:
    """The deploy-loop check of a finished robot run (``robo_ppo/deploy_check.py``): prints the table and
    the verdict, then films ``deploy.mp4``; returns what ``summary.json`` records. A failure of the
    check is recorded, not raised: the run and its controller are already saved."""
    from robo_ppo.deploy_check import deploy_check, film, goal_line

    c = cfg.deploy_check
    try:
        report = deploy_check(onnx_path, run_dir, segments=c.segments, seconds=c.seconds, seed=c.seed,
                              goal=dict(c.goal))
    except Exception as e:  # noqa: BLE001 - the kit's errors, a missing model package, OSError
        log.warning("deploy check failed: %s: %s", type(e).__name__, e)
        return {"error": f"{type(e).__name__}: {e}"}
    print(f"deploy loop: {c.segments} random command segments of {c.seconds:g} s (seed {c.seed}), the check "
          f"`python export/deploy.py {onnx_path} --schedule random --segments {c.segments} --seed {c.seed}`\n"
          f"{report['table']}\n{goal_line(report)}", flush=True)
    s = report["summary"]
    out = {"meets_goal": report["meets_goal"], "falls": s["falls"], "json": str(run_dir / "deploy.json"),
           **{k: v for k, v in s.items() if k.startswith("mean_abs_")}}
    if c.video:
        video = run_dir / "deploy.mp4"
        error = film(onnx_path, video, seed=c.seed)
        if error is None:
            out["video"] = str(video)
            print(f"video of the default command schedule: {video}", flush=True)
        else:
            log.warning("deploy video not written (%s)", error)
    return out


RANK_OVERRIDES = ("hydra.run.dir=.", "hydra.output_subdir=null", "hydra/job_logging=stdout")
"""Hydra settings of the ranks > 0 of a torchrun job: no run directory, no
``.hydra/`` files, logs to stdout only (rank 0 writes everything)."""


@report_errors
def _task(cfg: DictConfig) -> None:
    dist = init_distributed(cfg.device)  # a no-op outside torchrun
    finished = False
    try:
        run(cfg, Path(HydraConfig.get().runtime.output_dir), dist)
        finished = True
    finally:
        shutdown_distributed(barrier=finished)


def main() -> None:
    default_gl()   # before mujoco is imported: the end-of-run deploy video renders headless
    register_configs()
    if env_rank() > 0:
        sys.argv.extend(RANK_OVERRIDES)
    run_app(_task, "train")


if __name__ == "__main__":
    main()
