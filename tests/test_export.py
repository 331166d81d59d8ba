"""ONNX export: parity, clipping, dynamic batch, metadata, atomic failure, CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from hydra import compose, initialize_config_dir

from robo_ppo.errors import CheckpointError, ConfigError, ExportError
from robo_ppo.export import (
    METADATA_FORMAT,
    OPSET,
    PARITY_TOLERANCE,
    config_hash,
    export_checkpoint,
    parity_observations,
    read_metadata,
)
from robo_ppo.hydra_utils import config_dir
from robo_ppo.runner.checkpoint import load_checkpoint, policy_from_checkpoint


@pytest.fixture(scope="module")
def exports(runs):
    """{(env, trained): export report}, written into each run directory (default output)."""
    return {key: export_checkpoint(ckpt.parent.parent) for key, ckpt in runs.items()}


def session(path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def torch_policy(ckpt):
    return policy_from_checkpoint(load_checkpoint(ckpt))


@pytest.mark.parametrize("env", ["inverted_pendulum", "cartpole"])
@pytest.mark.parametrize("trained", [True, False], ids=["trained", "fresh"])
def test_parity_within_tolerance(exports, runs, env, trained):
    report = exports[(env, trained)]
    assert report["path"] == runs[(env, trained)].parent.parent / "policy.onnx"
    assert report["path"].is_file()
    assert report["num_samples"] >= 10_000
    assert report["max_abs_diff"] <= PARITY_TOLERANCE
    assert report["action_mismatches"] == 0
    print(f"{env} {'trained' if trained else 'fresh'}: max_abs_diff={report['max_abs_diff']:.3e}")
    # independent re-check on fresh observations with a different seed, all outputs
    policy = torch_policy(runs[(env, trained)])
    obs = parity_observations(policy, 10_000, seed=123)
    got = session(report["path"]).run(["actions"], {"obs": obs})[0]
    with torch.no_grad():
        want = policy(torch.from_numpy(obs)).numpy()
    if policy.is_discrete:
        assert got.dtype == np.int64 and got.shape == (len(obs),)
        # identical except possibly at exact logit ties (none expected)
        assert np.mean(got == want) > 0.999
    else:
        assert got.dtype == np.float32 and got.shape == (len(obs), policy.act_dim)
        assert np.abs(got - want).max() <= PARITY_TOLERANCE


def test_trained_normalizer_is_not_trivial(runs):
    """The 'trained' policies really carry non-default statistics (what the parity test is about)."""
    policy = torch_policy(runs[("inverted_pendulum", True)])
    rms = policy.obs_normalizer.rms
    assert rms.count > 1000
    assert not torch.allclose(rms.var, torch.ones_like(rms.var))


@pytest.mark.parametrize("env", ["inverted_pendulum", "cartpole"])
def test_graph_clips_extreme_observations(exports, runs, env):
    policy = torch_policy(runs[(env, True)])
    norm = policy.obs_normalizer
    mean = norm.rms.mean.numpy()
    std = np.sqrt(norm.rms.var.numpy() + norm.eps)
    sess = session(exports[(env, True)]["path"])
    for sign in (1.0, -1.0):
        extreme = np.full((1, policy.obs_dim), sign * 1e6, dtype=np.float32)
        at_clip = (mean + sign * 1.001 * norm.clip * std).astype(np.float32)[None, :]
        a_extreme = sess.run(["actions"], {"obs": extreme})[0]
        a_clip = sess.run(["actions"], {"obs": at_clip})[0]
        np.testing.assert_array_equal(a_extreme, a_clip)
        with torch.no_grad():
            clipped = torch.full((1, policy.obs_dim), sign * norm.clip)
            want = policy.deterministic_action(clipped).numpy()
        np.testing.assert_allclose(a_extreme, want, atol=PARITY_TOLERANCE, rtol=0)
    if not policy.is_discrete:
        low, high = policy.action_low.numpy(), policy.action_high.numpy()
        acts = sess.run(["actions"], {"obs": parity_observations(policy, 10_000)})[0]
        assert (acts >= low).all() and (acts <= high).all()


@pytest.mark.parametrize("env", ["inverted_pendulum", "cartpole"])
def test_dynamic_batch(exports, runs, env):
    sess = session(exports[(env, True)]["path"])
    policy = torch_policy(runs[(env, True)])
    obs_all = parity_observations(policy, 10_000)[:4096]
    for b in (1, 7, 4096):
        got = sess.run(["actions"], {"obs": obs_all[:b]})[0]
        assert got.shape[0] == b
        with torch.no_grad():
            want = policy(torch.from_numpy(obs_all[:b])).numpy()
        if policy.is_discrete:
            assert got.shape == (b,) and (got == want).mean() > 0.999
        else:
            assert got.shape == (b, policy.act_dim)
            assert np.abs(got - want).max() <= PARITY_TOLERANCE
    inp = sess.get_inputs()[0]
    assert inp.name == "obs" and isinstance(inp.shape[0], str) and inp.shape[1] == policy.obs_dim


def test_metadata_round_trips(exports, runs):
    ckpt = runs[("inverted_pendulum", True)]
    state = load_checkpoint(ckpt)
    path = exports[("inverted_pendulum", True)]["path"]
    meta = read_metadata(path)
    assert meta == {**exports[("inverted_pendulum", True)]["metadata"], "graph_inputs": meta["graph_inputs"],
                    "graph_outputs": meta["graph_outputs"]}
    assert meta["format"] == METADATA_FORMAT
    assert meta["obs_dim"] == 4 and meta["act_dim"] == 1 and meta["action_type"] == "continuous"
    assert meta["action_low"] == [-3.0] and meta["action_high"] == [3.0]
    assert meta["task_id"] == "InvertedPendulum-v5" and meta["task_name"] == "inverted_pendulum"
    assert meta["engine"] == "gymnasium"
    assert meta["control_dt"] == pytest.approx(0.04)
    assert meta["action_names"] == ["slide"]
    assert len(meta["observation_names"]) == 4
    assert meta["obs_clip"] == 5.0
    assert meta["global_step"] == state["global_step"] == 2048
    assert meta["config_sha256"] == config_hash(state["config"])
    assert meta["robo_ppo_version"] == state["robo_ppo_version"]
    assert meta["opset"] == OPSET >= 17
    assert meta["outputs"] == ["actions"]
    assert meta["parity_max_abs_diff"] == exports[("inverted_pendulum", True)]["max_abs_diff"]
    assert meta["graph_inputs"] == {"obs": ["batch", 4]}
    # the raw protobuf holds the same strings, one self-contained file at the fixed opset
    model = onnx.load(str(path))
    props = {p.key: p.value for p in model.metadata_props}
    assert json.loads(props["obs_dim"]) == 4 and props["task_id"] == "InvertedPendulum-v5"
    assert {(o.domain, o.version) for o in model.opset_import} == {("", OPSET)}
    onnx.checker.check_model(model, full_check=True)
    assert not list(path.parent.glob("*.data"))
    # the same through onnxruntime's view
    assert session(path).get_modelmeta().custom_metadata_map["task_id"] == "InvertedPendulum-v5"
    # discrete: bounds are [0, n-1], output int64 [batch]
    dmeta = read_metadata(exports[("cartpole", True)]["path"])
    assert dmeta["action_type"] == "discrete" and dmeta["act_dim"] == 2
    assert dmeta["action_low"] == [0.0] and dmeta["action_high"] == [1.0]
    assert dmeta["graph_outputs"] == {"actions": ["batch"]}


def test_value_output_behind_flag(runs, tmp_path):
    ckpt = runs[("cartpole", True)]
    report = export_checkpoint(ckpt, tmp_path / "with_value.onnx", include_value=True)
    assert report["value_max_abs_diff"] is not None and report["max_abs_diff"] <= PARITY_TOLERANCE
    sess = session(report["path"])
    assert [o.name for o in sess.get_outputs()] == ["actions", "value"]
    policy = torch_policy(ckpt)
    obs = parity_observations(policy, 10_000)[:64]
    actions, value = sess.run(None, {"obs": obs})
    with torch.no_grad():
        want = policy.get_value(policy.normalize(torch.from_numpy(obs))).numpy()
    assert value.shape == (64,) and value.dtype == np.float32
    np.testing.assert_allclose(value, want, atol=1e-4, rtol=1e-5)
    assert read_metadata(report["path"])["outputs"] == ["actions", "value"]


def test_parity_failure_writes_nothing(runs, tmp_path, monkeypatch):
    """A graph that differs from the torch policy is rejected and no file is left behind."""
    import robo_ppo.export as export_mod

    out_existing = tmp_path / "existing.onnx"
    out_existing.write_bytes(b"previous export")
    original = export_mod._deployment_module

    class Skewed(torch.nn.Module):  # the graph that gets exported differs from the policy by 1e-3
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, obs):
            return self.inner(obs) + 1e-3

    monkeypatch.setattr(export_mod, "_deployment_module", lambda p, v: Skewed(original(p, v)).eval())
    with pytest.raises(ExportError, match="parity check failed"):
        export_checkpoint(runs[("inverted_pendulum", True)], out_existing)
    assert out_existing.read_bytes() == b"previous export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing.onnx"]  # no temp files


def test_user_errors(tmp_path, runs):
    with pytest.raises(CheckpointError, match="does not exist"):
        export_checkpoint(tmp_path / "missing")
    with pytest.raises(ConfigError, match="num_samples"):
        export_checkpoint(runs[("cartpole", True)], tmp_path / "p.onnx", num_samples=100)
    with pytest.raises(ConfigError, match=".onnx"):
        export_checkpoint(runs[("cartpole", True)], tmp_path / "p.txt")
    foreign = tmp_path / "foreign.onnx"
    foreign.write_bytes(b"not onnx")
    with pytest.raises(CheckpointError):
        read_metadata(foreign)


def _cli(args, cwd):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "robo_ppo.export", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_cli_export(runs, tmp_path):
    """The console entry point end to end (Hydra config, one output line per fact, no .hydra/ or log)."""
    ckpt = runs[("inverted_pendulum", False)]
    proc = subprocess.run([sys.executable, "-m", "robo_ppo.export", f"checkpoint={ckpt}",
                           "output=cli/policy.onnx"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert proc.returncode == 0, proc.stderr
    assert "parity: max |onnxruntime - torch| =" in proc.stdout
    assert (tmp_path / "cli" / "policy.onnx").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cli"]  # no .hydra/, no export.log


def _compose_export(overrides):
    from robo_ppo.export import register_export_config

    register_export_config()
    with initialize_config_dir(config_dir=config_dir(), version_base=None):
        return compose("export", overrides=overrides)


@pytest.mark.parametrize("overrides, message", [
    (["checkpoint=/nonexistent/run"], "does not exist"),
    ([], "no checkpoint given"),
    (["checkpoint=/nonexistent/run", "num_samples=10"], "num_samples must be >= 10000"),
])
def test_cli_errors_are_one_line(overrides, message, capsys):
    from robo_ppo.export import _task

    cfg = _compose_export(overrides)
    with pytest.raises(SystemExit) as exc:
        _task(cfg)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


def test_export_config_schema_rejects_unknown_keys():
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException):
        _compose_export(["checkpoint=x", "outptu=p.onnx"])  # typo in a key
    with pytest.raises(ConfigCompositionException):
        _compose_export(["checkpoint=x", "tolerance=abc"])
