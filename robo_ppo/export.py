"""``robo-ppo-export``: checkpoint -> one verified ONNX file for deployment.

    robo-ppo-export checkpoint=outputs/halfcheetah/2026-11-23_10-00-00
    robo-ppo-export checkpoint=run/checkpoints/ckpt_0001000448.pt output=cheetah.onnx include_value=true

The graph (``ActorCritic.forward``, see ``robo_ppo/modules/actor_critic.py``)::

    obs float32 [batch, obs_dim]                      raw observation, dynamic batch axis
      -> (obs - mean) / sqrt(var + eps)                frozen running statistics
      -> clip to +-obs_clip                            the training clip (5 by default)
      -> actor MLP
      -> Gaussian mean clipped to [action_low, action_high]   -> actions float32 [batch, act_dim]
         or Categorical argmax                                -> actions int64 [batch]
    (optional, ``include_value=true``) critic -> value float32 [batch]

Exporter: ``torch.onnx.export(..., dynamo=True)`` (the torch.export-based
exporter, default in torch 2.13; needs the ``onnxscript`` package) at the fixed
opset ``OPSET`` = 18 with the batch axis declared through ``dynamic_shapes``.
The file is written as one self-contained ``.onnx`` (no external data), with
the IR version lowered to the smallest one that carries opset 18 (IR 8), so
onnxruntime >= 1.14 loads it.

Parity check (always): onnxruntime vs the torch policy on ``num_samples``
observations drawn from the normalizer's distribution N(mean, var) plus
906 extreme rows (+-6 sigma .. +-1e6 sigma, +-1e6 absolute, single
outliers). The export fails with ``ExportError`` (CLI: exit 2, one line) and
leaves no file behind when the max abs difference exceeds ``tolerance``
(1e-5). For a Categorical head the figure is measured on the logits that feed
the argmax, and the argmax must agree on every row whose top-two logits are
further apart than the tolerance.

Metadata (``ModelProto.metadata_props``; strings, parse with
``read_metadata``): see ``METADATA_KEYS``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from omegaconf import MISSING

from robo_ppo.config import teacher_terms
from robo_ppo.deploy_kit.onnx_controller import SUPPORTED_FORMAT, MetadataError, encode_metadata_value
from robo_ppo.deploy_kit.onnx_controller import decode_metadata as _decode_kit
from robo_ppo.errors import CheckpointError, ConfigError, ExportError, report_errors

OPSET = 18
"""ONNX default-domain opset of the exported graph (the dynamo exporter's native opset)."""
METADATA_FORMAT = SUPPORTED_FORMAT
"""Value of the ``format`` metadata key (the kit's ``SUPPORTED_FORMAT``); bump both when the graph contract
changes."""
PARITY_TOLERANCE = 1e-5
"""Largest accepted max abs difference between onnxruntime and torch."""
PARITY_SAMPLES = 10_000
"""Observations drawn from the normalizer's distribution for the parity check."""

METADATA_KEYS: dict[str, str] = {
    "format": "str: always 'robo_ppo.policy/1'",
    "obs_dim": "int: length of the observation vector (input 'obs' is [batch, obs_dim])",
    "act_dim": "int: continuous: action vector length; discrete: number of actions",
    "action_type": "str: 'continuous' (actions float32 [batch, act_dim]) or 'discrete' (int64 [batch])",
    "action_low": "json list[float]: lower action bound per dim (discrete: [0])",
    "action_high": "json list[float]: upper action bound per dim (discrete: [act_dim - 1])",
    "task_id": "str: gymnasium id of the task the policy was trained on (env.id)",
    "task_name": "str: short task name (env.name, the conf/env file)",
    "engine": "str: simulator engine used for training (gymnasium, envpool, brax)",
    "engine_task_id": "str: the task's id in that engine's naming",
    "control_dt": "float: seconds of simulated time per policy step (call rate = 1 / control_dt)",
    "observation_names": "json list[str] or null: name of each observation entry, where the task defines them",
    "action_names": "json list[str] or null: actuator name of each action entry, where the task defines them",
    "obs_clip": "float or null: clip of the normalized observation (null: no normalizer)",
    "env_config": "json: the training env config (id, max_episode_steps, kwargs) to rebuild the task",
    "outputs": "json list[str]: graph outputs, ['actions'] or ['actions', 'value']",
    "robo_ppo_version": "str: robo_ppo version that wrote the file",
    "global_step": "int: environment steps the policy was trained for",
    "config_sha256": "str: sha256 of the resolved training config (sorted-key JSON)",
    "source_checkpoint": "str: file name of the checkpoint",
    "opset": "int: ONNX opset",
    "exporter": "str: exporter and torch version",
    "parity_max_abs_diff": "float: measured max |onnxruntime - torch| at export",
    "parity_samples": "int: observations in the parity check",
    "train_environments": "json list or null: where each part of the run trained, oldest first: from_step "
                          "(the global step it started or resumed at), robo_ppo's git commit, Python, CPU model, "
                          "vector flags and torch's kernel choice, library versions (provenance.environment); "
                          "null for checkpoints written before it was recorded",
    "robot": "json dict or null: robot-side facts of a robot task (joint order, home pose, action "
             "scale, kp/kd, torque limits, control and sim dt, observation layout, command ranges)",
}


log = logging.getLogger("robo_ppo.export")


@dataclass
class ExportConfig:
    """Schema of ``conf/export.yaml`` (``robo-ppo-export``)."""

    checkpoint: str = MISSING
    """Run directory (its latest checkpoint) or checkpoint file (.pt)."""
    output: str | None = None
    """Where to write the ONNX file; null = ``<run dir>/policy.onnx``."""
    include_value: bool = False
    """Add the critic's ``value [batch]`` as a second output."""
    num_samples: int = PARITY_SAMPLES
    """Observations drawn from the normalizer's distribution for the parity check (>= 10000)."""
    tolerance: float = PARITY_TOLERANCE
    """Fail when the max abs difference onnxruntime vs torch exceeds this."""
    seed: int = 0
    """Seed of the parity observations."""
    debug: bool = False
    """Show full tracebacks for user errors."""


# --------------------------------------------------------------------------- helpers
def config_hash(config: dict[str, Any]) -> str:
    """sha256 hex digest of a resolved config as sorted-key compact JSON."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def default_output(checkpoint_path: Path) -> Path:
    """``<run dir>/policy.onnx`` for ``<run dir>/checkpoints/ckpt_*.pt``, else next to the file."""
    parent = checkpoint_path.parent
    run_dir = parent.parent if parent.name == "checkpoints" else parent
    return run_dir / "policy.onnx"


def _deployment_module(policy, include_value: bool):
    """``nn.Module`` whose forward is ``policy.forward`` (and the critic's value when asked)."""
    class DeploymentPolicy(torch.nn.Module):
        """obs [B, obs_dim] -> actions (+ value [B]); the graph that goes into the ONNX file."""

        def __init__(self, policy):
            super().__init__()
            self.policy = policy

        def forward(self, obs):
            norm_obs = self.policy.normalize(obs)
            actions = self.policy.deterministic_action(norm_obs)
            if include_value:
                return actions, self.policy.get_value(norm_obs)
            return actions

    return DeploymentPolicy(policy).eval()


@contextlib.contextmanager
def _quiet_exporter():
    """Silence the exporter's chatter (torchvision notices, deprecation warnings, the
    optimizer's INFO lines) for the duration of the export; errors still raise."""
    previous = logging.root.manager.disable
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        try:
            yield
        finally:
            logging.disable(previous)


def policy_to_onnx(policy, include_value: bool = False, opset: int = OPSET):
    """Export an ``ActorCritic`` (eval mode, CPU) to an in-memory ``onnx.ModelProto``.

    Input ``obs`` float32 ``[batch, obs_dim]``; outputs ``actions`` (float32
    ``[batch, act_dim]`` or int64 ``[batch]``) and, with ``include_value``,
    ``value`` float32 ``[batch]``. Uses the dynamo exporter.

    Raises:
        ExportError: the exporter is missing (onnxscript) or fails on the model.
    """
    try:
        import onnxscript  # noqa: F401  (the dynamo exporter translates through onnxscript)
    except ImportError:
        raise ExportError("the dynamo ONNX exporter needs onnxscript: pip install onnxscript==0.7.2") from None
    module = _deployment_module(policy, include_value)
    example = torch.zeros(2, policy.obs_dim, dtype=torch.float32)
    output_names = ["actions", "value"] if include_value else ["actions"]
    with tempfile.TemporaryDirectory() as artifacts, _quiet_exporter():
        try:
            program = torch.onnx.export(
                module, (example,), dynamo=True, opset_version=opset, input_names=["obs"],
                output_names=output_names, external_data=False, optimize=True, verbose=False,
                dynamic_shapes={"obs": {0: torch.export.Dim("batch", min=1)}}, artifacts_dir=artifacts)
        except Exception as e:
            raise ExportError(f"torch.onnx.export (dynamo, opset {opset}) failed: {type(e).__name__}: "
                              f"{str(e).splitlines()[0][:300] if str(e) else ''}; rerun with debug=true "
                              "for the traceback") from e
    model = program.model_proto
    # smallest IR version that carries this opset: older onnxruntime builds load the file
    model.ir_version = onnx.helper.find_min_ir_version_for(list(model.opset_import))
    model.producer_name = "robo_ppo"
    model.producer_version = _version()
    return model


def build_metadata(state: dict[str, Any], policy, include_value: bool) -> dict[str, str]:
    """The ``metadata_props`` of the exported file (values are strings, see ``METADATA_KEYS``)."""
    cfg = state["config"]
    env_meta = dict(state.get("env_meta") or {})
    if policy.is_discrete:
        low, high = [0.0], [float(policy.act_dim - 1)]
    else:
        low = [float(x) for x in policy.action_low.cpu().tolist()]
        high = [float(x) for x in policy.action_high.cpu().tolist()]
    norm = policy.obs_normalizer
    obs_names = env_meta.get("observation_names")
    act_names = env_meta.get("action_names")
    if obs_names is not None and len(obs_names) != policy.obs_dim:
        obs_names = None
    if act_names is not None and (policy.is_discrete or len(act_names) != policy.act_dim):
        act_names = None
    env_cfg = cfg.get("env", {})
    values: dict[str, Any] = {
        "format": METADATA_FORMAT,
        "obs_dim": policy.obs_dim,
        "act_dim": policy.act_dim,
        "action_type": "discrete" if policy.is_discrete else "continuous",
        "action_low": low,
        "action_high": high,
        "task_id": env_cfg.get("id", env_meta.get("env_id", "")),
        "task_name": env_cfg.get("name", ""),
        "engine": env_meta.get("engine", cfg.get("engine", {}).get("name", "")),
        "engine_task_id": env_meta.get("env_id", env_cfg.get("id", "")),
        "control_dt": float(env_meta.get("control_dt", 0.0)),
        "observation_names": obs_names,
        "action_names": act_names,
        "obs_clip": None if norm is None else float(norm.clip),
        "env_config": {"id": env_cfg.get("id"), "max_episode_steps": env_cfg.get("max_episode_steps"),
                       "kwargs": env_cfg.get("kwargs", {})},
        "outputs": ["actions", "value"] if include_value else ["actions"],
        "robo_ppo_version": str(state.get("robo_ppo_version") or _version()),
        "global_step": int(state.get("global_step", 0)),
        "config_sha256": config_hash(cfg),
        "source_checkpoint": Path(state.get("path", "")).name,
        "opset": OPSET,
        "exporter": f"torch.onnx.export dynamo=True (torch {torch.__version__})",
        "train_environments": state.get("environments"),
        "robot": env_meta.get("robot"),
    }
    return {k: encode_metadata_value(k, v) for k, v in values.items()}


def _version() -> str:
    from robo_ppo import __version__

    return __version__


def decode_metadata(props: dict[str, str], source: str = "the file") -> dict[str, Any]:
    """The deploy kit's ``decode_metadata`` of a whole ``metadata_props`` map (its checks: a policy
    file is untrusted input).

    Raises:
        CheckpointError: the map is not robo_ppo policy metadata, a value is not JSON or of the wrong
            type (one line naming ``source`` and the key).
    """
    try:
        return _decode_kit(props, source)
    except MetadataError as e:
        raise CheckpointError(str(e)) from None


def read_metadata(path: str | Path) -> dict[str, Any]:
    """Parsed metadata of a robo_ppo ONNX file (``METADATA_KEYS``), plus ``graph_inputs``
    and ``graph_outputs`` (name -> shape list with ``None``/str for dynamic axes).

    Raises:
        CheckpointError: missing or unreadable file (not ONNX, truncated), not a robo_ppo policy,
            metadata that is not JSON or of the wrong type, or that contradicts the graph's shapes.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise CheckpointError(f"{p} does not exist; pass a policy.onnx written by robo-ppo-export")
    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as e:
        raise CheckpointError(f"cannot read {p} as ONNX ({type(e).__name__}); the file is corrupt or "
                              "not an ONNX model: re-export it with robo-ppo-export") from None
    meta = decode_metadata({prop.key: prop.value for prop in model.metadata_props}, p.name)

    def shapes(values):
        return {v.name: [d.dim_param or (d.dim_value if d.HasField("dim_value") else None)
                         for d in v.type.tensor_type.shape.dim] for v in values}

    meta["graph_inputs"] = shapes(model.graph.input)
    meta["graph_outputs"] = shapes(model.graph.output)
    obs_shape = meta["graph_inputs"].get("obs")
    if obs_shape is None or len(obs_shape) != 2 or obs_shape[1] != meta["obs_dim"]:
        raise CheckpointError(f"{p}: metadata says obs_dim={meta['obs_dim']} but the graph input is "
                              f"obs{obs_shape}; the metadata was edited or the file is damaged: re-export it")
    act_shape = meta["graph_outputs"].get("actions")
    want = 1 if meta["action_type"] == "discrete" else 2
    if act_shape is None or len(act_shape) != want or (want == 2 and act_shape[1] != meta["act_dim"]):
        raise CheckpointError(f"{p}: metadata says {meta['action_type']} act_dim={meta['act_dim']} but the "
                              f"graph output is actions{act_shape}; re-export the policy")
    return meta


# --------------------------------------------------------------------------- parity
def parity_observations(policy, num_samples: int = PARITY_SAMPLES, seed: int = 0) -> np.ndarray:
    """Test observations ``float32 [num_samples + 906, obs_dim]``.

    ``num_samples`` rows from N(mean, var) of the policy's normalizer (N(0, 1)
    without one), then extreme rows far outside the clip: every entry at
    ``mean +- k sigma`` for k in 6..1e6 with random signs, +-1e6 absolute,
    single-entry outliers, zeros, the mean, and rows exactly at +-clip sigma.
    """
    rng = np.random.default_rng(seed)
    d = policy.obs_dim
    norm = policy.obs_normalizer
    if norm is not None:
        mean = norm.rms.mean.detach().cpu().numpy().astype(np.float64)
        std = np.sqrt(norm.rms.var.detach().cpu().numpy().astype(np.float64) + norm.eps)
        clip = norm.clip
    else:
        mean, std, clip = np.zeros(d), np.ones(d), 5.0
    rows = [mean + std * rng.standard_normal((num_samples, d))]
    for k in (6.0, 10.0, 100.0, 1e3, 1e4, 1e6):
        signs = rng.choice([-1.0, 1.0], size=(100, d))
        rows.append(mean + k * std * signs)
    rows.append(rng.choice([-1e6, 1e6], size=(100, d)))
    outliers = mean + std * rng.standard_normal((200, d))
    idx = rng.integers(0, d, size=200)
    outliers[np.arange(200), idx] = rng.choice([-1e6, 1e6], size=200)
    rows.append(outliers)
    rows.append(np.stack([np.zeros(d), mean, mean + clip * std, mean - clip * std,
                          np.full(d, 1e6), np.full(d, -1e6)]))
    return np.concatenate(rows).astype(np.float32)


def _ort_session(model_bytes: bytes):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(model_bytes, sess_options=opts, providers=["CPUExecutionProvider"])


def check_parity(model, policy, obs: np.ndarray, tolerance: float = PARITY_TOLERANCE) -> dict[str, Any]:
    """Compare onnxruntime on ``model`` with the torch ``policy`` on ``obs [B, obs_dim]``.

    Gaussian head: max abs difference of the actions. Categorical head: max
    abs difference of the logits (exposed from the graph for the check only),
    and the number of rows with a clear winner (top-two gap > tolerance)
    whose argmax differs. The value output, when present, is compared with
    ``tolerance * max(1, |value|)``.

    Returns ``{"max_abs_diff", "value_max_abs_diff", "action_mismatches",
    "num_samples", "passed"}``.
    """
    check = onnx.ModelProto()
    check.CopyFrom(model)
    logits_name = None
    if policy.is_discrete:
        for node in check.graph.node:
            if node.op_type == "ArgMax" and "actions" in node.output:
                logits_name = node.input[0]
        if logits_name is None:
            raise ExportError("the exported graph has no ArgMax producing 'actions'; cannot check parity")
        check.graph.output.append(onnx.helper.make_tensor_value_info(logits_name, onnx.TensorProto.FLOAT,
                                                                     None))
    session = _ort_session(check.SerializeToString())
    names = [o.name for o in session.get_outputs()]
    results = dict(zip(names, session.run(None, {"obs": obs}), strict=True))
    with torch.no_grad():
        x = torch.from_numpy(obs)
        norm_obs = policy.normalize(x)
        ref_actions = policy.deterministic_action(norm_obs).numpy()
        ref_logits = policy.actor(norm_obs).numpy() if policy.is_discrete else None
        ref_value = policy.get_value(norm_obs).numpy() if "value" in results else None
    report: dict[str, Any] = {"num_samples": int(obs.shape[0]), "action_mismatches": 0,
                              "value_max_abs_diff": None}
    if policy.is_discrete:
        got = results[logits_name]
        diff = float(np.max(np.abs(got.astype(np.float64) - ref_logits)))
        top2 = np.sort(ref_logits, axis=-1)[:, -2:] if ref_logits.shape[-1] > 1 else None
        clear = np.ones(len(obs), bool) if top2 is None else (top2[:, 1] - top2[:, 0]) > tolerance
        mismatches = int(np.sum((results["actions"] != ref_actions) & clear))
        report["action_mismatches"] = mismatches
        ok = diff <= tolerance and mismatches == 0 and results["actions"].dtype == np.int64
    else:
        diff = float(np.max(np.abs(results["actions"].astype(np.float64) - ref_actions)))
        ok = diff <= tolerance and results["actions"].dtype == np.float32
    if ref_value is not None:
        vdiff = np.abs(results["value"].astype(np.float64) - ref_value)
        report["value_max_abs_diff"] = float(vdiff.max())
        ok = ok and bool(np.all(vdiff <= tolerance * np.maximum(1.0, np.abs(ref_value))))
    if not np.isfinite(diff):
        ok = False
    report["max_abs_diff"] = diff
    report["passed"] = bool(ok)
    return report


# --------------------------------------------------------------------------- export
def _atomic_write(data: bytes, output: Path) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp_", suffix=".onnx", dir=output.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; a deployable file is world-readable
        os.replace(tmp, output)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def export_checkpoint(checkpoint: str | Path, output: str | Path | None = None, include_value: bool = False,
                      *, num_samples: int = PARITY_SAMPLES, tolerance: float = PARITY_TOLERANCE,
                      seed: int = 0) -> dict[str, Any]:
    """Export a checkpoint's policy to ONNX, verify it against torch, write it atomically.

    Args:
        checkpoint: run directory (latest checkpoint) or checkpoint file.
        output: ONNX path; ``None`` = ``<run dir>/policy.onnx``.
        include_value: also output the critic's ``value [batch]``.
        num_samples: parity observations drawn from the normalizer's
            distribution (at least 10,000; 906 extreme rows are added).
        tolerance: max accepted abs difference onnxruntime vs torch.
        seed: seed of the parity observations.

    Returns:
        ``{"path", "max_abs_diff", "value_max_abs_diff", "action_mismatches",
        "num_samples", "opset", "exporter", "metadata", "seconds"}``.

    Raises:
        CheckpointError: the checkpoint cannot be loaded.
        ConfigError: ``num_samples < 10000`` or ``tolerance <= 0``.
        ExportError: a teacher policy (``teacher_obs``), the exporter fails, or the parity check fails (nothing is
            written then; an existing file at ``output`` is left untouched).
    """
    from robo_ppo.runner.checkpoint import load_checkpoint, policy_from_checkpoint

    if num_samples < PARITY_SAMPLES:
        raise ConfigError(f"num_samples must be >= {PARITY_SAMPLES} for the parity check, got {num_samples}")
    if not tolerance > 0:
        raise ConfigError(f"tolerance must be > 0, got {tolerance}")
    t0 = time.perf_counter()
    state = load_checkpoint(checkpoint)
    teacher = teacher_terms(state["config"])
    if teacher:
        raise ExportError(f"{state['path']}: a teacher policy (env.task_params.teacher_obs: {teacher}) reads "
                          "terms a robot cannot measure, so no robot can run it; it is not exported")
    try:
        policy = policy_from_checkpoint(state, device="cpu")
    except Exception as e:
        raise CheckpointError(f"cannot rebuild the policy from {state['path']} ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:200]}); the checkpoint does not match this "
                              "robo_ppo version's network") from None
    out = Path(output).expanduser() if output is not None else default_output(Path(state["path"]))
    if out.suffix != ".onnx":
        raise ConfigError(f"output must end in .onnx, got {out}")
    model = policy_to_onnx(policy, include_value=include_value)
    obs = parity_observations(policy, num_samples, seed)
    parity = check_parity(model, policy, obs, tolerance)
    if not parity["passed"]:
        detail = f"max |onnxruntime - torch| = {parity['max_abs_diff']:.3g}"
        if parity["action_mismatches"]:
            detail += f", {parity['action_mismatches']} argmax mismatches"
        if parity["value_max_abs_diff"] is not None:
            detail += f", value diff {parity['value_max_abs_diff']:.3g}"
        raise ExportError(f"ONNX parity check failed on {parity['num_samples']} observations ({detail}, "
                          f"tolerance {tolerance:g}); nothing written to {out}. The exported graph disagrees "
                          "with the torch policy: report it with the checkpoint and the torch/onnxruntime "
                          "versions")
    meta = build_metadata(state, policy, include_value)
    meta["opset"] = json.dumps(next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")))
    meta["parity_max_abs_diff"] = json.dumps(parity["max_abs_diff"])
    meta["parity_samples"] = json.dumps(parity["num_samples"])
    del model.metadata_props[:]
    for k, v in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    model.doc_string = (f"robo_ppo policy for {meta['task_id']}: obs float32 [batch, {policy.obs_dim}] -> "
                        + ("actions int64 [batch]" if policy.is_discrete
                           else f"actions float32 [batch, {policy.act_dim}]")
                        + (", value float32 [batch]" if include_value else ""))
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as e:
        raise ExportError(f"the exported model fails onnx.checker ({str(e).splitlines()[0][:200]}); "
                          "nothing written") from e
    _atomic_write(model.SerializeToString(), out)
    decoded = decode_metadata(meta)
    return {"path": out, "max_abs_diff": parity["max_abs_diff"],
            "value_max_abs_diff": parity["value_max_abs_diff"],
            "action_mismatches": parity["action_mismatches"], "num_samples": parity["num_samples"],
            "opset": decoded["opset"], "exporter": decoded["exporter"], "metadata": decoded,
            "seconds": time.perf_counter() - t0}


# --------------------------------------------------------------------------- CLI
def register_export_config() -> None:
    """Register ``ExportConfig`` as ``export_schema`` (used by conf/export.yaml)."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="export_schema", node=ExportConfig)


@report_errors
def _task(cfg) -> None:
    from omegaconf import OmegaConf

    if OmegaConf.is_missing(cfg, "checkpoint"):
        raise ConfigError("no checkpoint given: robo-ppo-export checkpoint=<run dir or ckpt_*.pt> "
                          "[output=policy.onnx]")
    torch.set_num_threads(1)
    report = export_checkpoint(cfg.checkpoint, cfg.output, include_value=cfg.include_value,
                               num_samples=cfg.num_samples, tolerance=cfg.tolerance, seed=cfg.seed)
    meta = report["metadata"]
    kind = "discrete" if meta["action_type"] == "discrete" else f"{meta['act_dim']}-d continuous"
    print(f"parity: max |onnxruntime - torch| = {report['max_abs_diff']:.3e} over "
          f"{report['num_samples']:,} observations (tolerance {cfg.tolerance:g})"
          + (f"; value {report['value_max_abs_diff']:.3e}" if report["value_max_abs_diff"] is not None else ""))
    print(f"wrote {report['path']} ({meta['task_id']}, obs_dim {meta['obs_dim']} -> {kind} action, "
          f"opset {report['opset']}, step {meta['global_step']:,})")
    sys.stdout.flush()


def main() -> None:
    from robo_ppo.hydra_utils import run_app

    register_export_config()
    run_app(_task, "export")


if __name__ == "__main__":
    main()
