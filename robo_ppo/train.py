"""``robo-ppo-train``: train PPO from the Hydra config tree in ``conf/``.

    robo-ppo-train env=halfcheetah                    # one run
    robo-ppo-train env=hopper algo.learning_rate=1e-4 seed=3
    robo-ppo-train resume=outputs/2026-11-23/10-00-00  # continue a run
    robo-ppo-train -m seed=1,2,3 env=hopper,walker2d  # Hydra multirun
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from robo_ppo.config import TrainConfig, register_configs
from robo_ppo.errors import ConfigError, ExportError, report_errors
from robo_ppo.hydra_utils import run_app

log = logging.getLogger("robo_ppo")
GROUPS = ("env", "algo", "backend")


def resume_config(cfg: DictConfig, saved: dict, overrides: list[str]) -> DictConfig:
    """The saved run's config with this invocation's explicit key overrides on top.

    ``resume=DIR total_timesteps=2000000`` extends a run; changing a config
    group (``env=...``) is refused because the checkpoint would not fit.
    """
    merged = OmegaConf.merge(OmegaConf.structured(TrainConfig), saved)
    for ov in overrides:
        key, _, value = ov.lstrip("+~").partition("=")
        if key == "resume":
            continue
        if key in GROUPS:
            if saved[key]["name"] != cfg[key]["name"]:
                raise ConfigError(f"cannot change {key} when resuming (run used {key}="
                                  f"{saved[key]['name']}); drop the {key}= override")
            continue
        merged = OmegaConf.merge(merged, OmegaConf.from_dotlist([f"{key}={value}"]))
    merged.resume = cfg.resume
    return merged


def run(cfg: DictConfig, run_dir: Path) -> dict:
    """Train (or resume) with a composed config; returns the trainer's summary."""
    from robo_ppo.runner.checkpoint import load_checkpoint
    from robo_ppo.runner.trainer import Trainer

    state = None
    if cfg.resume:
        state = load_checkpoint(cfg.resume)
        overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
        cfg = resume_config(cfg, state["config"], overrides)
        log.info("resuming from %s at step %d", state["path"], state["global_step"])
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    trainer = Trainer(cfg, run_dir, resume_state=state)
    try:
        summary = trainer.train()
    finally:
        trainer.close()
    export_error = None
    if summary["finished"] and cfg.export_onnx and summary["checkpoint"]:
        from robo_ppo.export import export_checkpoint

        try:
            report = export_checkpoint(summary["checkpoint"], run_dir / "policy.onnx")
            summary["onnx"] = str(report["path"])
            summary["onnx_max_abs_diff"] = report["max_abs_diff"]
        except ExportError as e:  # the run itself finished: record, then report the failure
            summary["onnx_error"] = str(e)
            export_error = e
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    log.info("done: %s", json.dumps(summary))
    if export_error is not None:
        raise export_error
    return summary


@report_errors
def _task(cfg: DictConfig) -> None:
    run(cfg, Path(HydraConfig.get().runtime.output_dir))


def main() -> None:
    register_configs()
    run_app(_task, "train")


if __name__ == "__main__":
    main()
