"""The wheel carries everything the CLIs need: every module, the config tree, the deployment kit.

Builds the wheel (no build isolation: a few seconds, offline) from the checkout's files and runs
``robo-ppo-train --cfg job`` from the unpacked wheel outside the checkout. ``.ci/run`` goes further
(a fresh venv, a short training run, export and replay from the installed wheel).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def checkout_files() -> list[str]:
    if shutil.which("git") is None:
        pytest.skip("git is not available")
    proc = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "-co", "--exclude-standard"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip("not a git checkout")
    return [f for f in proc.stdout.split("\0") if f and (ROOT / f).is_file()]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    setuptools = pytest.importorskip("setuptools")
    if int(setuptools.__version__.split(".")[0]) < 68:
        pytest.skip(f"setuptools {setuptools.__version__} < 68 (pyproject's build requirement)")
    files = checkout_files()
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    for f in files:  # what a clean checkout holds: no build/, no egg-info
        (src / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, src / f)
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                           "-w", str(tmp / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (built,) = (tmp / "dist").glob("robo_ppo-*.whl")
    return built


def test_wheel_holds_modules_configs_and_kit(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    files = checkout_files()
    want = {f for f in files if f.startswith("robo_ppo/") and f.endswith(".py")}
    want |= {"robo_ppo/" + f for f in files if f.startswith("conf/") and f.endswith(".yaml")}
    want |= {"robo_ppo/deploy_kit/" + f[len("export/"):] for f in files if f.startswith("export/")}
    assert "robo_ppo/conf/train.yaml" in want and "robo_ppo/deploy_kit/deploy.py" in want
    assert not sorted(want - names), "missing from the wheel (list them in pyproject.toml)"
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    for cli in ("robo-ppo-train", "robo-ppo-export", "robo-ppo-replay"):
        assert cli in text


def test_unpacked_wheel_runs_outside_the_checkout(wheel, tmp_path):
    """The unpacked wheel first on sys.path, started from an empty directory: the config tree and the
    kit are the packaged copies, and ``robo-ppo-train --cfg job`` composes the config."""
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    work = tmp_path / "work"
    work.mkdir()
    env = dict(os.environ, PYTHONPATH=str(site))
    probe = textwrap.dedent("""
        import robo_ppo
        from robo_ppo.hydra_utils import config_dir
        from robo_ppo.replay import deploy_kit_dir
        print(robo_ppo.__file__, config_dir(), deploy_kit_dir(), sep="\\n")
    """)
    proc = subprocess.run([sys.executable, "-c", probe], cwd=work, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    module, conf, kit = proc.stdout.split()
    assert Path(module).is_relative_to(site) and Path(conf) == site / "robo_ppo" / "conf"
    assert Path(kit) == site / "robo_ppo" / "deploy_kit"
    proc = subprocess.run([sys.executable, "-m", "robo_ppo.train", "--cfg", "job", "env=hopper"], cwd=work,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "id: Hopper-v5" in proc.stdout and "total_timesteps:" in proc.stdout
    assert not list(work.iterdir())  # --cfg job writes nothing
