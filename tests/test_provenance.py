"""environment.json: the commit, CPU and library versions a run trains on."""

import json
import shutil
import subprocess

import numpy as np
import pytest
import torch

from robo_ppo.runner.provenance import environment, source_revision

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def _git(cwd, *args):
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


@needs_git
def test_source_revision_names_the_commit_and_a_changed_tree(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "a.py").write_text("x = 1\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "one")
    head = _git(tmp_path, "rev-parse", "HEAD")
    assert source_revision(pkg) | {"version": None} == {"version": None, "git_commit": head, "git_dirty": False}
    (pkg / "a.py").write_text("x = 2\n")
    assert source_revision(pkg)["git_dirty"] is True
    (pkg / "b.py").write_text("")  # untracked: not a change to the committed code
    (pkg / "a.py").write_text("x = 1\n")
    assert source_revision(pkg)["git_dirty"] is False


def test_source_revision_outside_a_repository_has_no_commit(tmp_path):
    assert source_revision(tmp_path)["git_commit"] is None


def test_environment_records_the_libraries_and_cpu_this_process_uses():
    env = environment()
    json.dumps(env)  # what the run directory gets
    assert torch.__version__.startswith(env["packages"]["torch"].split("+")[0])
    assert env["packages"]["numpy"] == np.__version__
    assert env["cpu"]["torch_capability"] == torch.backends.cpu.get_cpu_capability()
    assert env["cpu"]["count"] >= 1 and env["cpu"]["model"]


@needs_git
def test_an_untracked_package_inside_another_repository_has_no_commit(tmp_path):
    """A wheel installed in a virtualenv inside a user's repository is not that repository's code."""
    (tmp_path / "README").write_text("x\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "one")
    site = tmp_path / ".venv" / "site-packages" / "robo_ppo"
    site.mkdir(parents=True)
    (site / "__init__.py").write_text("")
    assert source_revision(site)["git_commit"] is None
