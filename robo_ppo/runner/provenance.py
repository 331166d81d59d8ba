"""What a run was trained on: source commit, library versions, CPU and GPU.

A shipped controller records the command that trains it; bit-for-bit
reproduction also needs the same code, the same libraries and float kernels
that take the same paths. Torch and MuJoCo choose vector kernels by the CPU
(``torch.backends.cpu.get_cpu_capability()``: AVX2, AVX512 ...), and a
library that is not pinned may move between two installs. ``environment.json``
in every run directory holds what is needed to tell two such runs apart:

    {"robo_ppo": {"version": "0.1.0", "git_commit": "80c104b...", "git_dirty": false},
     "python": "3.11.9", "platform": "Linux-6.8...-x86_64",
     "cpu": {"model": "...", "vector_flags": ["sse4_2", "avx", "avx2", "fma", "avx512f", ...],
             "count": 2, "torch_capability": "AVX512"},
     "packages": {"torch": "2.13.0", "numpy": "2.4.6", "mujoco": "4.0.0", ...},
     "cuda": null}
"""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any, Optional

PACKAGES = ("torch", "numpy", "mujoco", "mujoco-warp", "warp-lang", "gymnasium", "envpool", "jax", "jaxlib",
            "brax", "onnx", "onnxruntime", "hydra-core", "omegaconf")
"""Distributions whose versions a run records (those not installed are left out)."""


def _git(args: list[str], cwd: Path) -> Optional[str]:
    """``git <args>`` in ``cwd``; None when git or a repository is missing."""
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def source_revision(package_dir: Optional[Path] = None) -> dict[str, Any]:
    """The robo_ppo source the run imports: its version and, from a git checkout,
    the commit and whether tracked files differ from it (``git_dirty``).
    An installed wheel has no repository of its own: ``git_commit`` is None, also
    where its site-packages lie inside some other repository's (untracked) tree."""
    import robo_ppo

    package_dir = package_dir or Path(robo_ppo.__file__).resolve().parent
    # a wheel installed in a virtualenv inside some other repository is not that repository's code:
    # only a package whose files the repository tracks takes its commit
    tracked = _git(["ls-files", "--", "."], package_dir)
    commit = _git(["rev-parse", "HEAD"], package_dir) if tracked else None
    dirty = None
    if commit is not None:
        status = _git(["status", "--porcelain", "--untracked-files=no"], package_dir)
        dirty = None if status is None else bool(status)
    return {"version": robo_ppo.__version__, "git_commit": commit, "git_dirty": dirty}


VECTOR_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")
"""CPU flags (Linux ``/proc/cpuinfo``) that pick float kernels in torch, numpy and MuJoCo."""


def _cpu() -> dict[str, Any]:
    """The CPU's model name and which of ``VECTOR_FLAGS`` it has (None where /proc/cpuinfo is missing)."""
    model, flags = None, None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model is None:
                    model = value.strip()
                elif key.strip() == "flags" and flags is None:
                    have = set(value.split())
                    flags = [flag for flag in VECTOR_FLAGS if flag in have]
    except OSError:
        pass
    return {"model": model or platform.processor() or platform.machine(), "vector_flags": flags}


def environment() -> dict[str, Any]:
    """This process's provenance (the module docstring's layout). Never raises
    for a missing tool or package: what cannot be read is None or left out."""
    import torch

    packages = {}
    for name in PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    cuda = None
    if torch.cuda.is_available():
        cuda = {"runtime": torch.version.cuda, "devices": [torch.cuda.get_device_name(i)
                                                           for i in range(torch.cuda.device_count())]}
    return {
        "robo_ppo": source_revision(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": {**_cpu(), "count": os.cpu_count(), "torch_capability": torch.backends.cpu.get_cpu_capability()},
        "packages": packages,
        "cuda": cuda,
    }
