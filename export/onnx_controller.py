"""Run a robo_ppo policy exported to ONNX. Needs only numpy and onnxruntime.

This file is the deployment kit: copy it and ``policy.onnx`` onto the robot
computer (see README.md). It never imports torch or robo_ppo.

    from onnx_controller import OnnxController

    ctrl = OnnxController("policy.onnx", expect={"task_id": "HalfCheetah-v5"})
    action = ctrl(obs)            # obs [obs_dim] -> action [act_dim] (or an int)
    actions = ctrl(obs_batch)     # [B, obs_dim] -> [B, act_dim] (or int64 [B])

The graph inside the file does the whole observation-to-action map:
normalization with the training statistics, clip to +-obs_clip, actor, and the
deterministic action (Gaussian mean clipped to the action bounds, or the
Categorical argmax). Feed raw observations in the order ``observation_names``
(when the task defines them) and call it every ``control_dt`` seconds.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

__all__ = ["OnnxController", "ControllerError", "MetadataError", "read_metadata", "decode_metadata",
           "encode_metadata_value", "SUPPORTED_FORMAT", "STRING_KEYS"]

SUPPORTED_FORMAT = "robo_ppo.policy/1"
"""Metadata ``format`` this controller understands."""
STRING_KEYS = {"format", "action_type", "task_id", "task_name", "engine", "engine_task_id",
                "robo_ppo_version", "config_sha256", "source_checkpoint", "exporter"}
"""Metadata keys stored verbatim; every other value is JSON text."""
REQUIRED_KEYS = ("obs_dim", "act_dim", "action_type", "action_low", "action_high", "task_id", "control_dt")
"""Keys every robo_ppo policy file has (``robo_ppo/export.py: METADATA_KEYS`` documents them all)."""


class ControllerError(Exception):
    """Base class of the controller's errors; the message names the fix."""


class MetadataError(ControllerError):
    """The file is not a robo_ppo policy, or its metadata contradicts the graph or ``expect``."""


def encode_metadata_value(key: str, value: Any) -> str:
    """A metadata value as stored in the ONNX file: string keys verbatim, everything else as JSON text."""
    return str(value) if key in STRING_KEYS else json.dumps(value)


def decode_metadata(props: dict[str, str], source: str) -> dict[str, Any]:
    """The inverse of :func:`encode_metadata_value` over a whole ``metadata_props`` map, checked: the
    file is untrusted input, so every value the kit uses has its type checked here (``obs_dim``,
    ``act_dim`` integers >= 1; ``action_type`` ``continuous``/``discrete``; ``action_low``/``action_high``
    lists of numbers; ``task_id`` a string; ``control_dt`` a finite number >= 0;
    ``observation_names``/``action_names`` null or lists of strings; ``obs_clip`` null or a number;
    ``env_config`` null or an object). The ``robot`` entry is decoded here and checked by
    ``robot_metadata.RobotMetadata.from_dict``.

    Raises:
        MetadataError: not a robo_ppo policy file (format), invalid JSON, a required key missing, or a
            value of the wrong type (one line naming ``source`` and the key).
    """
    if props.get("format") != SUPPORTED_FORMAT:
        raise MetadataError(
            f"{source} is not a robo_ppo policy file (metadata format {str(props.get('format'))[:60]!r}, "
            f"expected {SUPPORTED_FORMAT!r}); export it with robo-ppo-export (a newer format needs a newer kit)")
    meta: dict[str, Any] = {}
    for key, value in props.items():
        if key in STRING_KEYS:
            meta[key] = value
            continue
        try:
            meta[key] = json.loads(value)
        except (ValueError, RecursionError) as e:  # JSONDecodeError, Python's int-digits limit, deep nesting
            what = e.msg if isinstance(e, json.JSONDecodeError) else type(e).__name__
            raise MetadataError(f"{source}: metadata {key}={value[:60]!r} is not valid JSON ({what}); re-export "
                                "the policy") from None
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        raise MetadataError(f"{source}: metadata lacks {missing}; re-export the policy with robo-ppo-export")
    _check_types(meta, source)
    return meta


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and not (isinstance(x, float) and math.isnan(x))


def _check_types(meta: dict[str, Any], source: str) -> None:
    """The types :func:`decode_metadata` promises (see its docstring)."""
    def fail(key: str, want: str) -> None:
        raise MetadataError(f"{source}: metadata {key} is {str(json.dumps(meta[key]))[:60]}, not {want}; "
                            "re-export the policy")

    for key in ("obs_dim", "act_dim"):
        v = meta[key]
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            fail(key, "an integer >= 1")
    if meta["action_type"] not in ("continuous", "discrete"):
        fail("action_type", "'continuous' or 'discrete'")
    for key in ("action_low", "action_high"):
        v = meta[key]
        if not isinstance(v, list) or not all(_is_number(x) for x in v):
            fail(key, "a list of numbers")
    if not isinstance(meta["task_id"], str):
        fail("task_id", "a string")
    dt = meta["control_dt"]
    if not _is_number(dt) or not math.isfinite(dt) or dt < 0:
        fail("control_dt", "a finite number >= 0 (seconds)")
    for key in ("observation_names", "action_names"):
        v = meta.get(key)
        if v is not None and (not isinstance(v, list) or not all(isinstance(x, str) for x in v)):
            fail(key, "null or a list of strings")
    if meta.get("obs_clip") is not None and not _is_number(meta["obs_clip"]):
        fail("obs_clip", "null or a number")
    if meta.get("env_config") is not None and not isinstance(meta["env_config"], dict):
        fail("env_config", "null or an object")


def read_metadata(path: str | Path) -> dict[str, Any]:
    """Parsed metadata of a robo_ppo ONNX file (ints, floats and lists decoded and type-checked,
    :func:`decode_metadata`).

    Raises:
        FileNotFoundError: no such file.
        MetadataError: not an ONNX file onnxruntime can load, or not a robo_ppo policy file.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p} does not exist; pass the policy.onnx written by robo-ppo-export")
    session = _session(p, None, None)
    return decode_metadata(dict(session.get_modelmeta().custom_metadata_map), p.name)


def _session(p: Path, opts: Any, providers: list[str] | None) -> Any:
    """An onnxruntime session of ``p``; a file it cannot load (not ONNX, truncated, an unsupported opset)
    is a :class:`MetadataError`."""
    try:
        return ort.InferenceSession(str(p), sess_options=opts, providers=providers or ["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph/InvalidProtobuf types
        first = (str(e).splitlines() or [type(e).__name__])[0][:200]
        raise MetadataError(f"{p.name}: onnxruntime cannot load the file ({first}); it is not an ONNX policy or "
                            "it is damaged: re-export the policy, or update onnxruntime (opset 18 needs "
                            ">= 1.14)") from None


class OnnxController:
    """A robo_ppo ONNX policy behind one call: raw observation in, action out.

    Args:
        path: the ``policy.onnx`` written by ``robo-ppo-export``.
        expect: metadata values the caller relies on, checked at load, e.g.
            ``{"task_id": "Hopper-v5", "obs_dim": 11, "act_dim": 3,
            "control_dt": 0.008}`` (floats compare with a 1e-9 relative tolerance).
        num_threads: onnxruntime intra-op threads; 1 gives the lowest batch-1
            latency on a small MLP and leaves the other cores to the robot.
        providers: onnxruntime execution providers (default CPU).
        allow_float64: accept float64 observations (cast to float32).
        check_finite: reject observations containing NaN or infinity.

    Attributes (from the metadata): ``obs_dim``, ``act_dim``, ``discrete``,
    ``action_low``/``action_high`` (float32 ``[act_dim]``; discrete: ``[0]``
    and ``[n - 1]``), ``task_id``, ``control_dt`` (s), ``observation_names``,
    ``action_names`` (lists or ``None``), ``metadata`` (everything).

    The file is untrusted input: it must load in onnxruntime, its metadata must decode with the
    types :func:`decode_metadata` checks, and agree with the graph (one float32 input ``obs`` of
    ``obs_dim`` entries, ``actions`` of ``act_dim``, bounds of that size with low <= high).

    Raises:
        FileNotFoundError: no such file.
        MetadataError: not an ONNX file or damaged, not a robo_ppo policy, metadata of the wrong type or
            that contradicts the graph (input/output shapes, bounds), or a value differing from ``expect``
            (one line naming the file and the key).
    """

    def __init__(self, path: str | Path, expect: dict[str, Any] | None = None, num_threads: int = 1,
                 providers: list[str] | None = None, allow_float64: bool = True, check_finite: bool = True):
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"{p} does not exist; pass the policy.onnx written by robo-ppo-export")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(num_threads)
        opts.inter_op_num_threads = 1
        self._session = _session(p, opts, providers)
        self.path = p
        self.metadata = decode_metadata(dict(self._session.get_modelmeta().custom_metadata_map), p.name)
        m = self.metadata
        self.obs_dim = int(m["obs_dim"])
        self.act_dim = int(m["act_dim"])
        self.discrete = m["action_type"] == "discrete"
        self.task_id = m["task_id"]
        self.control_dt = float(m["control_dt"])
        self.observation_names = m.get("observation_names")
        self.action_names = m.get("action_names")
        self.action_low = np.asarray(m["action_low"], dtype=np.float32)
        self.action_high = np.asarray(m["action_high"], dtype=np.float32)
        self.allow_float64 = bool(allow_float64)
        self.check_finite = bool(check_finite)
        self._check_graph()
        self._check_expect(expect or {})

    # ------------------------------------------------------------- checks
    def _check_graph(self) -> None:
        name = self.path.name
        inputs = self._session.get_inputs()
        if len(inputs) != 1 or inputs[0].name != "obs" or inputs[0].type != "tensor(float)":
            raise MetadataError(f"{name}: expected one float32 input 'obs', found "
                                f"{[(i.name, i.type) for i in inputs]}; re-export the policy")
        shape = inputs[0].shape
        if len(shape) != 2 or shape[1] != self.obs_dim:
            raise MetadataError(f"{name}: metadata says obs_dim={self.obs_dim} but the graph input is "
                                f"obs{shape}; the metadata was edited or the file is damaged: re-export it")
        outputs = {o.name: o for o in self._session.get_outputs()}
        if "actions" not in outputs:
            raise MetadataError(f"{name}: the graph has no 'actions' output; re-export the policy")
        out = outputs["actions"]
        if self.discrete:
            ok = out.type == "tensor(int64)" and len(out.shape) == 1
        else:
            ok = out.type == "tensor(float)" and len(out.shape) == 2 and out.shape[1] == self.act_dim
        if not ok:
            raise MetadataError(f"{name}: metadata says {self.metadata['action_type']} act_dim={self.act_dim} "
                                f"but the graph output is actions{out.shape} {out.type}; re-export the policy")
        bounds_len = 1 if self.discrete else self.act_dim
        if self.action_low.shape != (bounds_len,) or self.action_high.shape != (bounds_len,) \
                or np.any(self.action_low > self.action_high):
            raise MetadataError(f"{name}: action_low/action_high do not match act_dim={self.act_dim}; "
                                "re-export the policy")
        for key, want in (("observation_names", self.obs_dim), ("action_names", self.act_dim)):
            names = self.metadata.get(key)
            if names is not None and len(names) != want:
                raise MetadataError(f"{name}: {key} has {len(names)} entries, expected {want}; re-export")

    def _check_expect(self, expect: dict[str, Any]) -> None:
        for key, want in expect.items():
            if key not in self.metadata:
                raise MetadataError(f"{self.path.name}: expected {key}={want!r} but the file has no {key} "
                                    f"(keys: {sorted(self.metadata)})")
            got = self.metadata[key]
            if isinstance(want, float) or isinstance(got, float):
                same = isinstance(got, (int, float)) and isinstance(want, (int, float)) and \
                    abs(float(got) - float(want)) <= 1e-9 * max(1.0, abs(float(want)))
            elif isinstance(want, (list, tuple, np.ndarray)):
                same = isinstance(got, list) and len(got) == len(want) and \
                    all(a == b for a, b in zip(got, list(want), strict=True))
            else:
                same = got == want
            if not same:
                raise MetadataError(f"{self.path.name} does not match this robot/task: {key} is {got!r}, "
                                    f"expected {want!r}; deploy a policy exported for this task")

    # -------------------------------------------------------------- call
    def __call__(self, obs: Any) -> np.ndarray | int:
        """Action(s) for one observation or a batch.

        Args:
            obs: ``[obs_dim]`` (one observation) or ``[B, obs_dim]`` (a batch),
                float32 (float64 is cast when ``allow_float64``).

        Returns:
            Continuous: float32 ``[act_dim]`` or ``[B, act_dim]``, inside
            ``[action_low, action_high]``. Discrete: a Python ``int`` or int64 ``[B]``.

        Raises:
            TypeError: not a float32/float64 array.
            ValueError: wrong shape, or NaN/inf when ``check_finite``.
        """
        x = np.asarray(obs)
        if x.dtype != np.float32:
            if x.dtype == np.float64 and self.allow_float64:
                x = x.astype(np.float32)
            else:
                allowed = "float32 or float64" if self.allow_float64 else "float32"
                raise TypeError(f"observation dtype is {x.dtype}, expected {allowed} "
                                f"(e.g. np.asarray(obs, dtype=np.float32))")
        single = x.ndim == 1
        if single:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self.obs_dim or x.shape[0] < 1:
            raise ValueError(f"observation shape {np.shape(obs)} does not fit this policy: expected "
                             f"({self.obs_dim},) or (batch, {self.obs_dim}) for {self.task_id}")
        if self.check_finite and not np.isfinite(x).all():
            bad = np.argwhere(~np.isfinite(x))[0]
            label = self.observation_names[bad[1]] if self.observation_names else f"index {bad[1]}"
            raise ValueError(f"observation contains NaN or infinity (first at row {bad[0]}, {label}); "
                             "check the sensor pipeline")
        actions = self._session.run(["actions"], {"obs": np.ascontiguousarray(x)})[0]
        if single:
            return int(actions[0]) if self.discrete else actions[0]
        return actions

    def __repr__(self) -> str:
        kind = f"discrete({self.act_dim})" if self.discrete else f"box({self.act_dim})"
        return (f"OnnxController({self.path.name!r}, task={self.task_id}, obs_dim={self.obs_dim}, "
                f"action={kind}, control_dt={self.control_dt})")
