"""Weights & Biases logging (wandb.enabled=true), checked on a real offline run."""

from __future__ import annotations

import csv
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from robo_ppo.errors import ConfigError
from robo_ppo.runner.logger import COLUMNS, TB_TAGS

BLOCK = 32768  # the LevelDB log format W&B's .wandb transaction log uses
HEADER = b":W&B" + struct.pack("<HB", 0xBEE1, 0)


def read_wandb_records(path: Path) -> list:
    """The protobuf ``Record``s of an offline run's ``run-<id>.wandb`` file:
    a 7-byte header, then 32 KiB blocks of chunks (crc32, length, type:
    1 full, 2 first, 3 middle, 4 last); block tails under 7 bytes are padding."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:7] == HEADER, data[:7]
    records, pending, pos = [], b"", 7
    while pos + 7 <= len(data):
        left = BLOCK - pos % BLOCK
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == 0 and length == 0:
            break
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            rec = wandb_internal_pb2.Record()
            rec.ParseFromString(pending)
            records.append(rec)
    return records


def test_offline_run_logs_history_config_curve_and_onnx_artifact(tmp_path):
    pytest.importorskip("wandb")
    wandb_dir = tmp_path / "wandb_dir"
    wandb_dir.mkdir()
    run_dir = tmp_path / "run"
    env = os.environ | {"WANDB_MODE": "offline", "WANDB_DIR": str(wandb_dir), "WANDB_SILENT": "true"}
    proc = subprocess.run(
        [sys.executable, "-m", "robo_ppo.train", "env=inverted_pendulum", "total_timesteps=512",
         "algo.num_envs=2", "algo.num_steps=64", "algo.num_minibatches=2", "algo.update_epochs=2",
         "eval_interval=2", "eval_episodes=2", "progress=false", "wandb.enabled=true",
         "wandb.group=ci", "wandb.tags=[test]", f"hydra.run.dir={run_dir}"],
        capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = list((wandb_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    offline = runs[0]
    assert list(offline.glob("files/media/images/charts/learning_curve_*.png"))
    records = read_wandb_records(next(offline.glob("run-*.wandb")))
    by_type: dict[str, list] = {}
    for rec in records:
        by_type.setdefault(rec.WhichOneof("record_type"), []).append(rec)

    run = by_type["run"][0].run
    assert run.run_group == "ci" and list(run.tags) == ["test"] and run.display_name == "run"
    config = {item.key: json.loads(item.value_json) for item in run.config.update}  # the resolved config
    assert config["env"]["id"] == "InvertedPendulum-v5" and config["algo"]["num_envs"] == 2
    assert config["wandb"]["enabled"] is True and config["total_timesteps"] == 512

    # every metrics.csv row is in the history, at step global_step, under the TensorBoard tags
    with open(run_dir / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    history = []
    for rec in by_type["history"]:
        items: dict = {}
        for i in rec.history.item:  # W&B nests an image's fields: ["charts/learning_curve", "path"]
            path = [i.key] if i.key else list(i.nested_key)
            node = items
            for part in path[:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = json.loads(i.value_json)
        history.append(items)
    scalars = [h for h in history if "charts/SPS" in h]
    assert [h["_step"] for h in scalars] == [int(r["global_step"]) for r in rows] == [128, 256, 384, 512]
    for h, r in zip(scalars, rows, strict=True):
        for key, tag in TB_TAGS.items():   # a tag whose column this run lacks (bounds_loss) is not logged either
            if r.get(key, "") != "":
                assert h[tag] == pytest.approx(float(r[key]), rel=1e-6, abs=1e-9), (tag, h, r)
            else:
                assert tag not in h
    assert "charts/eval_return" in scalars[1] and "charts/eval_return" not in scalars[0]
    image = [h["charts/learning_curve"] for h in history if "charts/learning_curve" in h]
    assert len(image) == 1 and image[0]["path"].startswith("media/images/charts/learning_curve_")
    assert (offline / "files" / image[0]["path"]).stat().st_size == image[0]["size"]
    summary = {i.key: json.loads(i.value_json) for rec in by_type["summary"] for i in rec.summary.update if i.key}
    assert summary["final/global_step"] == 512
    assert summary["final/eval_return"] == pytest.approx(json.loads((run_dir / "summary.json").read_text())["eval"]["mean"])

    artifacts = [rec.artifact for rec in by_type["artifact"]]
    assert len(artifacts) == 1 and artifacts[0].type == "model"
    assert [e.path for e in artifacts[0].manifest.contents] == ["policy.onnx"]
    assert artifacts[0].manifest.contents[0].size == (run_dir / "policy.onnx").stat().st_size
    assert by_type["exit"][0].exit.exit_code == 0


def test_metrics_csv_has_a_column_for_every_value_the_trainer_logs(tmp_path, cfg_factory, monkeypatch):
    from robo_ppo.runner.logger import RunLogger
    from robo_ppo.runner.trainer import Trainer

    seen: list[dict] = []
    original = RunLogger.log
    monkeypatch.setattr(RunLogger, "log", lambda self, row: seen.append(dict(row)) or original(self, row))
    for extra in ([], ["algo=ppo_kl", "algo.target_kl=0.5"]):
        cfg = cfg_factory("env=inverted_pendulum", "total_timesteps=256", "algo.num_envs=2", "algo.num_steps=64",
                          "algo.num_minibatches=2", "algo.update_epochs=2", "eval_interval=2", "eval_episodes=2",
                          "progress=false", "tensorboard=false", *extra)
        tr = Trainer(cfg, tmp_path / str(len(extra)))
        tr.train()
        tr.close()
    keys = set().union(*seen)
    assert {"recent_return", "rollout_SPS", "kl", "early_stop", "eval_return"} <= keys
    assert keys <= set(COLUMNS)
    with open(tmp_path / "2" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert all(float(r["rollout_SPS"]) > 0 and r["recent_return"] != "" and r["kl"] != "" for r in rows)


def test_wandb_missing_is_one_config_error_naming_the_extra(tmp_path, cfg_factory, monkeypatch):
    from robo_ppo.runner.logger import start_wandb

    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb raises ImportError
    cfg = cfg_factory("env=inverted_pendulum", "wandb.enabled=true")
    with pytest.raises(ConfigError, match=r"needs the wandb package: pip install 'robo_ppo\[wandb\]' \(the wandb extra\)"):
        start_wandb(cfg, tmp_path)


def test_cli_without_wandb_stops_with_one_line_and_exit_2(tmp_path):
    code = ("import sys; sys.modules['wandb'] = None; from robo_ppo.train import main; "
            f"sys.argv = ['robo-ppo-train', 'env=inverted_pendulum', 'wandb.enabled=true', "
            f"'hydra.run.dir={tmp_path}/run']; main()")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr[-2000:]
    assert "pip install 'robo_ppo[wandb]' (the wandb extra)" in proc.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()  # stopped before training
