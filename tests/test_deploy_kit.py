"""The deployment kit in export/: numpy + onnxruntime only, clear errors, sim2sim."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import onnx
import pytest
import torch
from kit_helpers import KIT, load_kit

from robo_ppo.replay import replay
from robo_ppo.runner.checkpoint import load_checkpoint, policy_from_checkpoint


@pytest.fixture(scope="module")
def kit():
    """export/onnx_controller.py loaded as a module (it is a folder of files, not a package)."""
    return load_kit("onnx_controller")


def test_single_and_batch_match_torch(kit, policies):
    ckpt, onnx_path = policies["inverted_pendulum"]
    ctrl = kit.OnnxController(onnx_path)
    policy = policy_from_checkpoint(load_checkpoint(ckpt))
    assert (ctrl.obs_dim, ctrl.act_dim, ctrl.discrete, ctrl.task_id) == (4, 1, False, "InvertedPendulum-v5")
    assert ctrl.control_dt == pytest.approx(0.04) and ctrl.action_names == ["slide"]
    rng = np.random.default_rng(0)
    batch = rng.normal(size=(7, 4)).astype(np.float32)
    with torch.no_grad():
        want = policy(torch.from_numpy(batch)).numpy()
    got = ctrl(batch)
    assert got.shape == (7, 1) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    one = ctrl(batch[0])
    assert one.shape == (1,) and one.dtype == np.float32
    np.testing.assert_allclose(one, want[0], atol=1e-5, rtol=0)
    np.testing.assert_allclose(ctrl(batch[0].astype(np.float64)), one, atol=0, rtol=0)  # float64 is cast
    np.testing.assert_allclose(ctrl(list(map(float, batch[0]))), one, atol=1e-6)  # lists of floats work
    assert "InvertedPendulum-v5" in repr(ctrl)


def test_discrete_returns_int(kit, policies):
    ckpt, onnx_path = policies["cartpole"]
    ctrl = kit.OnnxController(onnx_path, expect={"task_id": "CartPole-v1", "obs_dim": 4, "act_dim": 2})
    policy = policy_from_checkpoint(load_checkpoint(ckpt))
    batch = np.random.default_rng(1).normal(size=(5, 4)).astype(np.float32)
    one = ctrl(batch[0])
    assert isinstance(one, int) and one in (0, 1)
    actions = ctrl(batch)
    assert actions.shape == (5,) and actions.dtype == np.int64
    with torch.no_grad():
        np.testing.assert_array_equal(actions, policy(torch.from_numpy(batch)).numpy())


@pytest.mark.parametrize("obs, error, match", [
    (np.zeros(3, np.float32), ValueError, r"shape \(3,\).*\(4,\) or \(batch, 4\)"),
    (np.zeros((2, 5), np.float32), ValueError, r"shape \(2, 5\)"),
    (np.zeros((2, 4, 1), np.float32), ValueError, "shape"),
    (np.zeros((0, 4), np.float32), ValueError, "shape"),
    (np.float32(1.0), ValueError, "shape"),
    (np.zeros(4, np.int64), TypeError, "dtype is int64"),
    (np.zeros(4, np.float16), TypeError, "dtype is float16"),
    (np.array([0.0, np.nan, 0.0, 0.0], np.float32), ValueError, "NaN.*hinge:pos"),
    (np.array([0.0, 0.0, np.inf, 0.0], np.float32), ValueError, "NaN or infinity"),
])
def test_wrong_inputs_raise_clear_errors(kit, policies, obs, error, match):
    ctrl = kit.OnnxController(policies["inverted_pendulum"][1])
    with pytest.raises(error, match=match):
        ctrl(obs)


def test_strict_float32(kit, policies):
    ctrl = kit.OnnxController(policies["inverted_pendulum"][1], allow_float64=False)
    with pytest.raises(TypeError, match="expected float32"):
        ctrl(np.zeros(4))


def test_metadata_mismatch_and_tampering(kit, policies, tmp_path):
    _, onnx_path = policies["inverted_pendulum"]
    with pytest.raises(kit.MetadataError, match="task_id is 'InvertedPendulum-v5', expected 'Hopper-v5'"):
        kit.OnnxController(onnx_path, expect={"task_id": "Hopper-v5"})
    with pytest.raises(kit.MetadataError, match="obs_dim is 4, expected 11"):
        kit.OnnxController(onnx_path, expect={"obs_dim": 11})
    with pytest.raises(kit.MetadataError, match="control_dt"):
        kit.OnnxController(onnx_path, expect={"control_dt": 0.008})
    kit.OnnxController(onnx_path, expect={"control_dt": 0.04, "action_low": [-3.0]})  # matches
    model = onnx.load(str(onnx_path))
    props = {p.key: p for p in model.metadata_props}
    props["act_dim"].value = "3"
    bad = tmp_path / "bad_act.onnx"
    onnx.save(model, str(bad))
    with pytest.raises(kit.MetadataError, match="act_dim=3"):
        kit.OnnxController(bad)
    props["act_dim"].value = "1"
    props["format"].value = "something/9"
    foreign = tmp_path / "foreign.onnx"
    onnx.save(model, str(foreign))
    with pytest.raises(kit.MetadataError, match="is not a robo_ppo policy file .metadata format 'something/9'"):
        kit.OnnxController(foreign)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00not a model")
    with pytest.raises(kit.MetadataError, match="cannot load"):
        kit.OnnxController(garbage)
    with pytest.raises(FileNotFoundError):
        kit.OnnxController(tmp_path / "missing.onnx")
    assert kit.read_metadata(onnx_path)["task_id"] == "InvertedPendulum-v5"


BLOCKER = textwrap.dedent("""
    import importlib.abc, sys

    class Blocker(importlib.abc.MetaPathFinder):
        BLOCKED = ("torch", "robo_ppo", "onnx", "onnxscript")

        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in self.BLOCKED:
                raise ImportError(f"{name} is blocked: the deployment kit must not import it")
            return None

    sys.meta_path.insert(0, Blocker())
    for mod in list(sys.modules):
        if mod.split(".")[0] in Blocker.BLOCKED:
            del sys.modules[mod]
""")


def test_kit_runs_without_torch(policies, tmp_path):
    """Copy the kit and the policy into an empty folder (as onto a robot) and run it with torch,
    robo_ppo and onnx unimportable; the sim2sim returns equal robo-ppo-replay's."""
    _, onnx_path = policies["inverted_pendulum"]
    robot = tmp_path / "robot"
    robot.mkdir()
    for name in ("onnx_controller.py", "sim2sim.py"):
        shutil.copy(KIT / name, robot / name)
    shutil.copy(onnx_path, robot / "policy.onnx")
    script = BLOCKER + textwrap.dedent("""
        import json
        import numpy as np
        try:
            import torch  # noqa: F401
            raise SystemExit("blocker failed")
        except ImportError:
            pass
        from onnx_controller import OnnxController
        import sim2sim

        ctrl = OnnxController("policy.onnx", expect={"task_id": "InvertedPendulum-v5"})
        single = ctrl(np.zeros(4, np.float32)).tolist()
        batch = ctrl(np.zeros((3, 4), np.float32)).tolist()
        result = sim2sim.run("policy.onnx", episodes=2, seed=5)
        leaked = sorted({m.split(".")[0] for m in sys.modules} & {"torch", "robo_ppo", "onnx"})
        print(json.dumps({"single": single, "batch": batch, "result": result, "leaked": leaked}))
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=robot, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["leaked"] == []
    assert len(out["single"]) == 1 and len(out["batch"]) == 3
    expected = replay(onnx_path, episodes=2, seed=5, print_table=False)
    assert out["result"]["lengths"] == expected["lengths"]
    np.testing.assert_allclose(out["result"]["returns"], expected["returns"], rtol=1e-6)


def test_sim2sim_cli(policies, capsys):
    spec = importlib.util.spec_from_file_location("sim2sim", KIT / "sim2sim.py")
    sim2sim = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sim2sim)
    _, onnx_path = policies["cartpole"]
    assert sim2sim.main([str(onnx_path), "--episodes", "1", "--max-episode-steps", "20"]) == 0
    out = capsys.readouterr().out
    assert "CartPole-v1" in out and "return" in out
    assert sim2sim.main([str(onnx_path), "--env-id", "Hopper-v5"]) == 2
    assert "expected 'Hopper-v5'" in capsys.readouterr().err


@pytest.mark.parametrize("display, preset, egl, expected", [
    (None, None, "libEGL.so.1", "egl"),        # headless with EGL: offscreen rendering by default
    (None, None, None, None),                  # no EGL library: left unset (egl would break `import mujoco`)
    (None, "osmesa", "libEGL.so.1", "osmesa"),  # the user's choice is kept
    (":0", None, "libEGL.so.1", None),         # a display: MuJoCo's own default
])
def test_default_gl_picks_egl_only_headless_with_egl_installed(monkeypatch, display, preset, egl, expected):
    from robo_ppo.deploy_kit import headless

    for name, value in (("DISPLAY", display), ("MUJOCO_GL", preset)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    monkeypatch.setattr(headless.sys, "platform", "linux")
    monkeypatch.setattr(headless.ctypes.util, "find_library", lambda name: egl if name == "EGL" else None)
    headless.default_gl()
    assert headless.os.environ.get("MUJOCO_GL") == expected


def test_train_entry_point_sets_the_renderer_before_mujoco_is_imported():
    """``robo-ppo-train`` calls ``default_gl`` in ``main`` (MuJoCo reads ``MUJOCO_GL`` at its import): that
    only works while importing the entry point does not import MuJoCo."""
    code = "import sys, robo_ppo.train; assert 'mujoco' not in sys.modules, 'robo_ppo.train imports mujoco'"
    subprocess.run([sys.executable, "-c", code], check=True)
