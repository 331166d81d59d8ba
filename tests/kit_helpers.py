"""Shared test helpers for the deployment kit in export/ (a folder of files, not a package)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np

KIT = Path(__file__).resolve().parents[1] / "export"


def load_kit(name: str):
    """``export/<name>.py`` loaded as a module from its path."""
    spec = importlib.util.spec_from_file_location(name, KIT / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_robot_policy(path: Path, robot: dict | None, bias=None, obs_dim: int = 48, act_dim: int = 12,
                       engine: str | None = None) -> Path:
    """A constant ONNX policy, obs ``[batch, obs_dim]`` -> actions ``obs @ 0 + bias``, with
    robo_ppo's metadata encoding (strings verbatim, the rest JSON) and ``robot`` when given."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.zeros((obs_dim, act_dim), np.float32), "w")
    b = numpy_helper.from_array(np.zeros(act_dim, np.float32) if bias is None else
                                np.asarray(bias, np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["obs", "w"], ["z"]), helper.make_node("Add", ["z", "b"], ["actions"])],
        "constant_robot_policy", [helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["batch", obs_dim])],
        [helper.make_tensor_value_info("actions", TensorProto.FLOAT, ["batch", act_dim])], [w, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)
    meta = {"format": "robo_ppo.policy/1", "obs_dim": obs_dim, "act_dim": act_dim, "action_type": "continuous",
            "action_low": [-1.0] * act_dim, "action_high": [1.0] * act_dim, "task_id": "Go1JoystickFlatTerrain",
            "control_dt": 0.02}
    if engine is not None:
        meta["engine"] = engine
    if robot is not None:
        meta["robot"] = robot
    for key, value in meta.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value if isinstance(value, str) else json.dumps(value)
    onnx.save(model, str(path))
    return path
