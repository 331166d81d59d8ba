"""A run stopped by SIGINT/SIGTERM keeps its outputs (robo_ppo/train.py:_train): policy.onnx exported from
its last checkpoint and verified, learning_curve.png, and summary.json marked unfinished; a robot run skips
its deploy check. A second Ctrl-C during those outputs still stops the process at once, leaving no
half-written policy.onnx. The signal tests run ``python -m robo_ppo.train`` as a subprocess and signal it;
an export that fails unexpectedly still leaves a finished run's summary.json (in process)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from robo_ppo.runner.checkpoint import list_checkpoints, load_checkpoint, policy_from_checkpoint

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PNG_END = b"IEND\xaeB`\x82"
QUIET = ["progress=false", "tensorboard=false", "eval_interval=0", "checkpoint_interval=100000"]
CHEETAH = ["env=halfcheetah", "total_timesteps=10000000", "algo.num_envs=2", "algo.num_steps=64",
           "algo.num_minibatches=2"]
"""HalfCheetah, 128 env steps an iteration, far from its end: only a signal stops it."""


def _start(run_dir: Path, *args: str) -> subprocess.Popen:
    """The run as a user's terminal starts it: SIGINT raises KeyboardInterrupt. A child inherits an
    ignored SIGINT (pytest started as a background job of a non-interactive shell, e.g. ``bash .ci/run &``)
    and Python keeps it ignored; a handler in the parent is reset to the default by exec, and the child's
    Python then installs its KeyboardInterrupt handler."""
    cmd = [sys.executable, "-m", "robo_ppo.train", *QUIET, *args, f"hydra.run.dir={run_dir}"]
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    finally:
        signal.signal(signal.SIGINT, inherited)


def _wait_for(proc: subprocess.Popen, ready, what: str, timeout: float = 180.0, poll: float = 0.2) -> None:
    """Poll ``ready()`` until true; kill the run and fail with its output when it exits or times out."""
    deadline = time.time() + timeout
    while not ready():
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail(f"{what} did not happen (exit code {proc.poll()}): " + proc.communicate()[0][-3000:])
        time.sleep(poll)


def _metrics_rows(run_dir: Path) -> int:
    metrics = run_dir / "metrics.csv"
    return len(metrics.read_text().splitlines()) - 1 if metrics.exists() else 0


def _stop_after_first_row(run_dir: Path, proc: subprocess.Popen, sig=signal.SIGTERM, timeout: float = 180.0) -> str:
    """Send ``sig`` once metrics.csv has a row; returns the run's output after it exited."""
    _wait_for(proc, lambda: _metrics_rows(run_dir) >= 1, "the first iteration", timeout)
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=240)
    return out


def _check_unfinished_summary(run_dir: Path) -> dict:
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["finished"] is False and summary["interrupted"] is True
    ckpt = Path(summary["checkpoint"])
    assert ckpt.is_file() and ckpt == list_checkpoints(run_dir / "checkpoints")[-1]
    state = load_checkpoint(ckpt)
    assert summary["iterations"] == state["iteration"] == _metrics_rows(run_dir)  # the last finished iteration
    assert summary["global_step"] == state["global_step"]
    return summary


def test_a_stopped_run_keeps_a_verified_policy_its_curve_and_summary(tmp_path):
    """SIGTERM (SIGINT goes through the same handler: ``test_a_second_ctrl_c...`` sends it)."""
    import onnxruntime as ort

    run_dir = tmp_path / "run"
    proc = _start(run_dir, *CHEETAH)
    out = _stop_after_first_row(run_dir, proc, signal.SIGTERM)
    assert proc.returncode == 0, out[-3000:]
    summary = _check_unfinished_summary(run_dir)
    assert "onnx_error" not in summary, summary["onnx_error"]
    assert summary["onnx"] == str(run_dir / "policy.onnx") and summary["onnx_max_abs_diff"] <= 1e-5
    assert (run_dir / "learning_curve.png").read_bytes()[:8] == PNG_MAGIC
    assert not list(run_dir.glob(".tmp_*")) and not (run_dir / "deploy.json").exists()
    assert "stopped at iteration" in out

    # the file is the checkpoint's policy: its deterministic action on observations around the normalizer's
    policy = policy_from_checkpoint(load_checkpoint(summary["checkpoint"]))
    rms = policy.obs_normalizer.rms
    rng = np.random.default_rng(0)
    obs = (rms.mean.numpy() + np.sqrt(rms.var.numpy()) * rng.standard_normal((16, policy.obs_dim))).astype(np.float32)
    session = ort.InferenceSession(str(run_dir / "policy.onnx"), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"obs": obs})
    with torch.no_grad():
        want = policy.deterministic_action(policy.normalize(torch.from_numpy(obs))).numpy()
    assert got.shape == want.shape == (16, policy.act_dim)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


def test_a_second_ctrl_c_while_the_outputs_are_written_stops_at_once(tmp_path):
    """The trainer has restored Python's SIGINT handler before the export: a second SIGINT raises
    KeyboardInterrupt there. The summary (written first) stays; no policy.onnx, whole or partial."""
    run_dir = tmp_path / "run"
    proc = _start(run_dir, *CHEETAH)
    _wait_for(proc, lambda: _metrics_rows(run_dir) >= 1, "the first iteration")
    proc.send_signal(signal.SIGINT)
    # the curve is plotted before the export, which takes seconds (import onnx, torch.onnx.export, parity
    # check): once the PNG is whole, a signal 0.2 s later lands in the export
    curve = run_dir / "learning_curve.png"
    _wait_for(proc, lambda: curve.exists() and curve.read_bytes().endswith(PNG_END), "the learning curve", poll=0.02)
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0, out[-3000:]
    assert "KeyboardInterrupt" in out
    assert not (run_dir / "policy.onnx").exists() and not list(run_dir.glob(".tmp_*"))
    summary = _check_unfinished_summary(run_dir)
    ckpt = summary["checkpoint"]
    assert "onnx" not in summary
    assert summary["onnx_error"] == f"export interrupted; export later with robo-ppo-export checkpoint={ckpt}"


def test_one_stop_delivered_twice_still_writes_the_outputs(tmp_path):
    """GNU ``timeout -s INT`` (without ``--foreground``) signals the child and then its process group: the
    run may get the same SIGINT twice within microseconds. A repeat that soon (here 50 ms, inside a ~1 s
    iteration) is not a second Ctrl-C: the run stops at the end of its iteration and writes its outputs."""
    run_dir = tmp_path / "run"
    slow = ["env=halfcheetah", "total_timesteps=10000000", "algo.num_envs=2", "algo.num_steps=4096",
            "algo.num_minibatches=2"]   # 8,192 env steps an iteration: the repeat lands mid-iteration
    proc = _start(run_dir, *slow)
    _wait_for(proc, lambda: _metrics_rows(run_dir) >= 1, "the first iteration")
    proc.send_signal(signal.SIGINT)
    time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, out[-3000:]
    assert "KeyboardInterrupt" not in out
    summary = _check_unfinished_summary(run_dir)
    assert summary["onnx"] == str(run_dir / "policy.onnx") and (run_dir / "policy.onnx").is_file()


def test_the_stop_handler_ignores_a_repeat_within_the_window_and_stops_hard_after_it():
    """``StopOnSignal`` on a clock the test sets: the first SIGINT requests the stop, a repeat 0.1 s later
    does nothing, one ``REPEAT_WINDOW_S`` after the first raises KeyboardInterrupt (a second Ctrl-C)."""
    from robo_ppo.runner.trainer import REPEAT_WINDOW_S, StopOnSignal

    now, stops = [100.0], []
    handler = StopOnSignal(lambda: stops.append(now[0]), clock=lambda: now[0])
    handler(signal.SIGINT, None)
    assert stops == [100.0]
    now[0] += 0.1
    handler(signal.SIGINT, None)
    handler(signal.SIGTERM, None)
    assert stops == [100.0]
    now[0] = 100.0 + REPEAT_WINDOW_S
    with pytest.raises(KeyboardInterrupt):
        handler(signal.SIGINT, None)
    assert stops == [100.0]


def test_an_unexpected_export_failure_leaves_the_finished_runs_summary(tmp_path, monkeypatch):
    """An export that fails with something other than ExportError (a bug, a module edited under a running
    process) propagates, and the finished run's summary.json is already beside its checkpoints."""
    from conftest import make_cfg

    import robo_ppo.export
    from robo_ppo.train import run

    def broken(*args, **kwargs):
        raise RuntimeError("an exporter bug")

    monkeypatch.setattr(robo_ppo.export, "export_checkpoint", broken)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    cfg = make_cfg("env=halfcheetah", "total_timesteps=256", "algo.num_envs=2", "algo.num_steps=64",
                   "algo.num_minibatches=2", "eval_episodes=1", "export_onnx=true")
    with pytest.raises(RuntimeError, match="an exporter bug"):
        run(cfg, run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["finished"] is True and "interrupted" not in summary and "onnx" not in summary
    assert summary["global_step"] == 256 and Path(summary["checkpoint"]).is_file()
    assert not (run_dir / "policy.onnx").exists()


# A stopped robot run (its controller exported, its deploy check skipped): tests/test_robot_resume.py,
# test_sigterm_then_resume_exports_the_uninterrupted_policy_bit_for_bit
