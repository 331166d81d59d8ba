"""Terrain for legged robots: a grid of patches of rising difficulty, as one MuJoCo heightfield.

A terrain is data (:class:`TerrainConfig`, the YAML files of ``conf/terrain/``) and one generator
(:func:`generate`), used by training and by the deployment kit alike:

* ``layout: none`` (``conf/terrain/flat.yaml``, the default): no terrain, the robot scene's own floor.
* ``layout: grid`` (``conf/terrain/rough.yaml``): ``num_rows`` levels x ``num_cols`` patches, each
  ``size`` m square. Row ``r`` is level ``r``, of difficulty ``r / (num_rows - 1)`` (0 .. 1); each type
  scales its parameter (``[easiest, hardest]``) linearly with it. Columns are given to the types by
  their ``proportion`` (column ``c`` takes the type whose cumulative share first exceeds
  ``(c + 0.5) / num_cols``). Types (:data:`TERRAIN_TYPES`): ``flat``, ``random_rough``,
  ``pyramid_slope_up`` / ``_down``, ``pyramid_stairs_up`` / ``_down`` (``up``: the pyramid rises
  toward the patch centre; ``down``: a pit), ``discrete_obstacles``.
* ``layout: stairs`` (``conf/terrain/stairs.yaml``): the deploy stairs, a corridor along +x with a
  flat approach, ``steps_up`` steps, a platform, ``steps_down`` steps and a flat run-out.

The whole terrain is one heightfield (MuJoCo ``hfield``): it replaces the robot scene's floor geom in
place (:meth:`Terrain.apply`, called by ``scene.build_scene(terrain=...)``), keeping the geom's name,
friction and contact bits, so floor-friction randomization and the contact sensors defined against the
floor keep working, on native MuJoCo and MuJoCo Warp alike. Every patch edge is at height 0 (except
where rough noise or an obstacle touches it), so patches join without seams; a flat ``border`` rings
the grid. Heights are a function of position, sampled every ``horizontal_scale`` m; MuJoCo joins the
samples by triangles, so a stair riser is a ramp one sample wide (0.05 m by default).

Reproducible: each patch draws from its own generator, seeded by ``(seed, row, col)``, so the same
seed gives the same heights, and a window of the grid (``window``) has the very heights of the
full grid's patches.

What :func:`generate` returns (:class:`Terrain`): the heights in MuJoCo's heightfield order
(``heights[j, i]`` at world ``x = origin[0] + i * spacing``, ``y = origin[1] + j * spacing``: rows along
y; the terrain is centred on the world origin; grid rows, the levels, lie along y and columns along x,
so a robot starting facing +x walks through patches of its own level), and per
patch ``[R, C]``: type, level, difficulty, the type's level-scaled parameter, and the spawn point
(patch centre, on the ground). :meth:`Terrain.height_at` gives the ground height anywhere, exactly as
MuJoCo's heightfield has it, for numpy arrays and torch tensors alike (training's privileged height
samples).

Imports numpy and mujoco only (PyYAML only to read a YAML file).
"""

from __future__ import annotations

import copy
import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

__all__ = ["TERRAIN_TYPES", "LAYOUTS", "PRESETS", "TerrainError", "TerrainConfig", "FlatParams", "RoughParams",
           "SlopeParams", "StairsParams", "ObstacleParams", "CorridorParams", "Terrain", "Placement", "load",
           "generate", "place", "height_at"]

TERRAIN_TYPES = ("flat", "random_rough", "pyramid_slope_up", "pyramid_slope_down", "pyramid_stairs_up",
                 "pyramid_stairs_down", "discrete_obstacles")
"""The patch types of a grid, in the order of :class:`TerrainConfig`'s fields (and of ``Terrain.type_ids``)."""
CORRIDOR = "stairs"
"""The one patch type of ``layout: stairs`` (``Terrain.type_names[-1]``)."""
LAYOUTS = ("none", "grid", "stairs")
_EPS = 1e-6


class TerrainError(ValueError):
    """A terrain config or option that cannot be used; the message (one line) names the key."""


# ------------------------------------------------------------------ config
@dataclass
class FlatParams:
    proportion: float = 0.1
    """Share of the grid's columns (any scale: the shares are normalized)."""


@dataclass
class RoughParams:
    proportion: float = 0.2
    height: list[float] = field(default_factory=lambda: [0.01, 0.10])
    """[easiest, hardest] maximum noise height (m): heights are U(0, h) on a lattice, linear in between."""
    spacing: float = 0.1
    """Lattice spacing of the noise (m), >= ``horizontal_scale``."""


@dataclass
class SlopeParams:
    proportion: float = 0.1
    slope: list[float] = field(default_factory=lambda: [0.0, 0.4])
    """[easiest, hardest] slope of the pyramid's faces (rise over run: 0.4 is 40%, 21.8 degrees)."""
    platform: float = 1.0
    """Side of the flat square at the patch centre (m)."""


@dataclass
class StairsParams:
    proportion: float = 0.2
    step_height: list[float] = field(default_factory=lambda: [0.05, 0.20])
    """[easiest, hardest] height of each step (m)."""
    step_width: float = 0.3
    """Tread of each step (m): square rings this wide, from the patch edge inward."""
    platform: float = 2.0
    """Smallest side of the flat square at the patch centre (m); the rings that fit outside it are steps."""


@dataclass
class ObstacleParams:
    proportion: float = 0.1
    height: list[float] = field(default_factory=lambda: [0.05, 0.20])
    """[easiest, hardest] obstacle height h (m): each box's height is U(h / 2, h)."""
    box_size: list[float] = field(default_factory=lambda: [0.4, 1.0])
    """Side of each box, U(lo, hi) per axis (m); not scaled by the level."""
    count: int = 40
    """Boxes per patch (overlapping boxes: the higher counts)."""
    platform: float = 2.0
    """Side of the obstacle-free square at the patch centre (m)."""


@dataclass
class CorridorParams:
    """``layout: stairs``: the deploy stairs, a corridor along +x."""

    steps_up: int = 8
    steps_down: int = 8
    step_height: float = 0.10
    """m"""
    step_width: float = 0.30
    """Tread (m)."""
    platform: float = 2.0
    """Length of the top platform (m)."""
    approach: float = 2.0
    """Flat length before the first step and after the last (m); the robot starts in its middle."""
    width: float = 1.5
    """Corridor width between the walls (m)."""
    wall_height: float = 0.3
    """Height of the walls above the floor beside them (m); 0: no walls."""
    wall_thickness: float = 0.2
    """m"""


@dataclass
class TerrainConfig:
    """A terrain; every length in m. The defaults of the grid fields are ``conf/terrain/rough.yaml``'s."""

    layout: str = "none"
    """``none`` (the robot scene's own floor), ``grid`` (levels x types) or ``stairs`` (the deploy corridor)."""
    seed: int = 0
    """Seeds every random draw (rough noise, obstacles): patch (r, c) draws from ``(seed, r, c)``."""
    num_rows: int = 10
    """Levels: row r is level r, of difficulty r / (num_rows - 1)."""
    num_cols: int = 10
    """Patches per level, given to the types by their proportions."""
    size: float = 8.0
    """Side of each square patch (m); a multiple of ``horizontal_scale``."""
    border: float = 1.0
    """Flat ring around the grid (or the corridor) (m); a multiple of ``horizontal_scale``."""
    horizontal_scale: float = 0.05
    """Spacing of the heightfield samples (m). Stairs need <= 0.05 (a riser is a ramp this wide)."""
    base_thickness: float = 1.0
    """Depth of the heightfield's solid base below its lowest point (m)."""
    spawn_radius: float = 0.3
    """A patch's spawn height is the highest ground within this radius of its centre (m)."""
    native_ccd: bool = False
    """False: the scene's convex collisions, heightfield contacts among them, use MuJoCo's libccd MPR with its
    normal fix (``mjDSBL_NATIVECCD``). Native GJK/EPA gives feet that sink into the heightfield (a small
    quadruped's soft feet: up to 2 cm) contacts on the side walls of the neighbouring prisms, with normals up to
    horizontal, even where the ground is flat (docs/terrain.md). MuJoCo Warp ignores the flag."""
    window: Optional[list[int]] = None
    """``[row_lo, row_hi, col_lo, col_hi]``: generate only these patches (half-open ranges) of the grid, with
    the full grid's heights (a deploy check on a few patches); None: all."""
    flat: FlatParams = field(default_factory=FlatParams)
    random_rough: RoughParams = field(default_factory=RoughParams)
    pyramid_slope_up: SlopeParams = field(default_factory=SlopeParams)
    pyramid_slope_down: SlopeParams = field(default_factory=SlopeParams)
    pyramid_stairs_up: StairsParams = field(default_factory=StairsParams)
    pyramid_stairs_down: StairsParams = field(default_factory=StairsParams)
    discrete_obstacles: ObstacleParams = field(default_factory=ObstacleParams)
    stairs: CorridorParams = field(default_factory=CorridorParams)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> TerrainConfig:
        """A config from plain data (a YAML file's, or an OmegaConf ``DictConfig``); missing keys keep
        their defaults; checked (:meth:`check`).

        Raises:
            TerrainError: an unknown key, a value of the wrong type, or a value :meth:`check` refuses."""
        cfg = _from_dict(cls, {} if data is None else data, "terrain")
        cfg.check()
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def proportions(self) -> np.ndarray:
        """The types' normalized shares, float ``[len(TERRAIN_TYPES)]``."""
        p = np.array([getattr(self, t).proportion for t in TERRAIN_TYPES], dtype=np.float64)
        return p / p.sum()

    def check(self) -> None:
        """Raises TerrainError naming the first key whose value cannot be used."""
        hs = self.horizontal_scale
        if self.layout not in LAYOUTS:
            raise TerrainError(f"terrain.layout must be one of {list(LAYOUTS)}, got {self.layout!r}")
        _positive("terrain.horizontal_scale", hs)
        _positive("terrain.base_thickness", self.base_thickness)
        for key in ("size", "border"):
            v = getattr(self, key)
            if not (v >= 0 and abs(v / hs - round(v / hs)) < 1e-6) or (key == "size" and v <= 0):
                raise TerrainError(f"terrain.{key} must be a {'positive' if key == 'size' else 'non-negative'} "
                                   f"multiple of horizontal_scale ({hs} m), got {v}")
        if self.num_rows < 1 or self.num_cols < 1:
            raise TerrainError(f"terrain.num_rows and num_cols must be >= 1, got {self.num_rows}, {self.num_cols}")
        if not self.spawn_radius >= 0:
            raise TerrainError(f"terrain.spawn_radius must be >= 0 m, got {self.spawn_radius}")
        if self.window is not None:
            w = list(self.window)
            if (len(w) != 4 or not 0 <= w[0] < w[1] <= self.num_rows or not 0 <= w[2] < w[3] <= self.num_cols):
                raise TerrainError(f"terrain.window must be [row_lo, row_hi, col_lo, col_hi] inside the "
                                   f"{self.num_rows} x {self.num_cols} grid, got {self.window}")
        for t in TERRAIN_TYPES:
            p = getattr(self, t)
            if not p.proportion >= 0:
                raise TerrainError(f"terrain.{t}.proportion must be >= 0, got {p.proportion}")
            for key in ("height", "slope", "step_height", "box_size"):
                r = getattr(p, key, None)
                if r is not None and (len(r) != 2 or not all(math.isfinite(v) and v >= 0 for v in r)):
                    raise TerrainError(f"terrain.{t}.{key} must be [easiest, hardest] >= 0, got {r}")
            for key in ("spacing", "step_width"):
                if hasattr(p, key):
                    _positive(f"terrain.{t}.{key}", getattr(p, key))
            if hasattr(p, "platform") and not 0 <= p.platform <= self.size:
                raise TerrainError(f"terrain.{t}.platform must be in [0, size], got {p.platform}")
            if isinstance(p, ObstacleParams) and (p.count < 0 or not 0 < p.box_size[0] <= p.box_size[1]):
                raise TerrainError(f"terrain.{t}: count must be >= 0 and 0 < box_size[0] <= box_size[1], got "
                                   f"{p.count}, {p.box_size}")
        if self.layout == "grid" and not sum(getattr(self, t).proportion for t in TERRAIN_TYPES) > 0:
            raise TerrainError("terrain: a grid needs some type with proportion > 0")
        s = self.stairs
        for key in ("step_width", "width", "wall_thickness"):
            _positive(f"terrain.stairs.{key}", getattr(s, key))
        if s.steps_up < 0 or s.steps_down < 0 or not (s.step_height >= 0 and s.platform >= 0 and s.approach >= 0
                                                       and s.wall_height >= 0):
            raise TerrainError(f"terrain.stairs: steps, heights and lengths must be >= 0, got {asdict(s)}")


def _positive(key: str, v: float) -> None:
    if not (isinstance(v, (int, float)) and v > 0 and math.isfinite(v)):
        raise TerrainError(f"{key} must be > 0, got {v!r}")


def _from_dict(cls, data: Any, where: str):
    if not isinstance(data, Mapping):
        raise TerrainError(f"{where} must be a mapping, got {type(data).__name__}")
    known = {f.name: f for f in fields(cls)}
    unknown = [k for k in data if k not in known]
    if unknown:
        raise TerrainError(f"{where} has no key {unknown[0]!r} (known: {sorted(known)})")
    out = {}
    defaults = cls()
    for name, value in data.items():
        default = getattr(defaults, name)
        key = f"{where}.{name}"
        if is_dataclass(default):
            out[name] = _from_dict(type(default), value, key)
        elif value is None:
            if name != "window":
                raise TerrainError(f"{key} must not be null")
            out[name] = None
        elif isinstance(default, list) or name == "window":
            if isinstance(value, (str, bytes, Mapping)) or not hasattr(value, "__iter__"):
                raise TerrainError(f"{key} must be a list, got {value!r}")
            out[name] = [_number(v, int if name == "window" else float, key) for v in value]
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise TerrainError(f"{key} must be true or false, got {value!r}")
            out[name] = value
        elif isinstance(default, str):
            if not isinstance(value, str):
                raise TerrainError(f"{key} must be a string, got {value!r}")
            out[name] = value
        else:
            out[name] = _number(value, type(default), key)
    return cls(**out)


def _number(v: Any, kind: type, key: str):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (kind is int and float(v) != int(v)):
        raise TerrainError(f"{key} must be {'an integer' if kind is int else 'a number'}, got {v!r}")
    if not math.isfinite(v):
        raise TerrainError(f"{key} must be finite, got {v!r}")
    return kind(v)


PRESETS: dict[str, dict[str, Any]] = {
    "flat": {"layout": "none"},
    "rough": {"layout": "grid"},
    "stairs": {"layout": "stairs", "border": 1.0},
}
"""The configs of ``conf/terrain/<name>.yaml`` (the kit carries them: it works without ``conf/``; the
tests check the files say the same)."""


def load(spec: Any = None) -> TerrainConfig:
    """A :class:`TerrainConfig` from ``spec``: None (no terrain), a config, a mapping, a preset name
    (:data:`PRESETS`) or the path of a ``.yaml`` / ``.yml`` / ``.json`` file.

    Raises:
        TerrainError: an unknown name, a file that cannot be read, or a config that does not check."""
    if isinstance(spec, TerrainConfig):
        spec.check()
        return spec
    if spec is None:
        return TerrainConfig()
    if isinstance(spec, Mapping):
        return TerrainConfig.from_dict(spec)
    if isinstance(spec, (str, Path)):
        name = str(spec)
        if name in PRESETS:
            return TerrainConfig.from_dict(PRESETS[name])
        path = Path(name)
        if path.suffix.lower() not in (".yaml", ".yml", ".json"):
            raise TerrainError(f"terrain {name!r} is neither a preset ({sorted(PRESETS)}) nor a .yaml/.json file")
        try:
            text = path.read_text()
        except OSError as e:
            raise TerrainError(f"cannot read terrain config {name}: {e.strerror or e}") from None
        if path.suffix.lower() == ".json":
            try:
                data = json.loads(text)
            except ValueError as e:
                raise TerrainError(f"terrain config {path.name} is not JSON: {e}") from None
        else:
            try:
                import yaml
            except ImportError:
                raise TerrainError("reading a YAML terrain config needs PyYAML (pip install pyyaml); or pass "
                                   "a .json file or a preset name") from None
            try:
                data = yaml.safe_load(text)
            except yaml.YAMLError as e:
                raise TerrainError(f"terrain config {path.name} is not YAML: {str(e).splitlines()[0]}") from None
        return TerrainConfig.from_dict(data)
    raise TerrainError(f"a terrain is a preset name, a file, a mapping or a TerrainConfig, got {type(spec).__name__}")


# ------------------------------------------------------------------ heights
def _lerp(r: Sequence[float], difficulty: float) -> float:
    return float(r[0] + difficulty * (r[1] - r[0]))


def _edge_distance(u: np.ndarray, v: np.ndarray, size: float) -> np.ndarray:
    """Distance (m) to the nearest patch edge of local points ``u`` (x) and ``v`` (y), broadcast."""
    return np.minimum(np.minimum(u, size - u), np.minimum(v, size - v))


def _noise(u: np.ndarray, v: np.ndarray, size: float, spacing: float, top: float, rng) -> np.ndarray:
    """U(0, top) on a lattice of ``spacing`` over the patch, bilinear in between, at ``v [m]`` (y) x ``u [n]`` (x):
    ``[m, n]``."""
    k = int(math.ceil(size / spacing - _EPS)) + 1
    lattice = rng.uniform(0.0, top, (k, k))

    def weights(x):  # [len(x), k] bilinear weights of the lattice nodes
        f = np.clip(x / spacing, 0, k - 1)
        i = np.minimum(np.floor(f).astype(int), k - 2) if k > 1 else np.zeros(len(x), int)
        t = f - i
        w = np.zeros((len(x), k))
        w[np.arange(len(x)), i] = 1 - t
        if k > 1:
            w[np.arange(len(x)), i + 1] += t
        return w

    return weights(v) @ lattice @ weights(u).T


def _patch(kind: str, cfg: TerrainConfig, difficulty: float, u: np.ndarray, v: np.ndarray, rng) -> tuple[np.ndarray, float]:
    """Heights ``[len(v), len(u)]`` (m) of a patch at local points ``v`` (along y) x ``u`` (along x) in
    [0, size], and the type's level-scaled parameter."""
    p, size = getattr(cfg, kind), cfg.size
    uu, vv = u[None, :], v[:, None]
    if kind == "flat":
        return np.zeros((len(v), len(u))), 0.0
    if kind == "random_rough":
        top = _lerp(p.height, difficulty)
        return _noise(u, v, size, p.spacing, top, rng), top
    if kind.startswith("pyramid_slope"):
        slope = _lerp(p.slope, difficulty) * (1 if kind.endswith("_up") else -1) + 0.0  # no -0.0
        d = _edge_distance(uu, vv, size)
        return slope * np.minimum(d, (size - p.platform) / 2), slope
    if kind.startswith("pyramid_stairs"):
        step = _lerp(p.step_height, difficulty) * (1 if kind.endswith("_up") else -1) + 0.0
        n_steps = int(math.floor((size - p.platform) / 2 / p.step_width + _EPS))
        d = _edge_distance(uu, vv, size)
        return step * np.minimum(np.floor(d / p.step_width + _EPS), n_steps), step
    if kind == "discrete_obstacles":
        h = _lerp(p.height, difficulty)
        z = np.zeros((len(v), len(u)))
        centre = rng.uniform(0, size, (p.count, 2))
        sides = rng.uniform(p.box_size[0], p.box_size[1], (p.count, 2))
        heights = rng.uniform(h / 2, h, p.count)
        for (cx, cy), (sx, sy), bh in zip(centre, sides, heights, strict=True):
            inside = (np.abs(uu - cx) <= sx / 2) & (np.abs(vv - cy) <= sy / 2)
            z = np.where(inside, np.maximum(z, bh), z)
        half = p.platform / 2
        clear = (np.abs(uu - size / 2) < half) & (np.abs(vv - size / 2) < half)
        return np.where(clear, 0.0, z), h
    raise TerrainError(f"unknown terrain type {kind!r} (known: {list(TERRAIN_TYPES)})")


def _corridor(cfg: TerrainConfig, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The stairs corridor's heights ``[m, n]`` at local ``y [m]`` (from the corridor's centre line) x ``x [n]``
    (from the approach's start)."""
    s = cfg.stairs
    up_end = s.approach + s.steps_up * s.step_width
    down_start = up_end + s.platform
    top = s.steps_up * s.step_height
    up = np.clip(np.floor((x - s.approach) / s.step_width + _EPS) + 1, 0, s.steps_up) * s.step_height
    down = top - np.clip(np.floor((x - down_start) / s.step_width + _EPS) + 1, 0, s.steps_down) * s.step_height
    line = np.where(x < down_start, up, down)
    line = np.where(x < s.approach - _EPS, 0.0, line)
    z = np.repeat(line[None, :], len(y), 0)
    if s.wall_height > 0:
        wall = (np.abs(y) > s.width / 2) & (np.abs(y) <= s.width / 2 + s.wall_thickness + _EPS)
        z = np.where(wall[:, None], z + s.wall_height, z)
    return z


# ------------------------------------------------------------------ result
@dataclass(eq=False)
class Terrain:
    """A generated terrain (:func:`generate`). Lengths in m, world frame; ``R`` x ``C`` patches.

    Attributes:
        config: the :class:`TerrainConfig` it was made from.
        heights: float32 ``[ny, nx]`` (MuJoCo's order): ``heights[j, i]`` is the ground height at
            ``x = origin[0] + i * spacing``, ``y = origin[1] + j * spacing``.
        origin: float ``[2]``, world x, y of ``heights[0, 0]``; spacing: float.
        type_names: the types (``TERRAIN_TYPES`` + ``("stairs",)``); type_ids int ``[R, C]`` index them.
        types: str ``[R, C]``; levels int ``[R, C]``; difficulty float ``[R, C]`` (0 .. 1).
        scale: float ``[R, C]``, the type's level-scaled parameter: rough and obstacle height (m), slope (rise
            over run) and step height (m), negative for ``_down``; 0 for flat; the step height for the corridor.
        spawn: float ``[R, C, 3]``, each patch's spawn point: its centre (the corridor: the approach's middle)
            and the highest ground within ``spawn_radius`` of it.
        rows, cols: int ``[R]``, ``[C]``: each patch row's / column's index in the full grid (``window``).
    """

    config: TerrainConfig
    heights: np.ndarray
    origin: np.ndarray
    spacing: float
    type_names: tuple[str, ...]
    type_ids: np.ndarray
    levels: np.ndarray
    difficulty: np.ndarray
    scale: np.ndarray
    spawn: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    _tensors: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def types(self) -> np.ndarray:
        return np.asarray(self.type_names)[self.type_ids]

    @property
    def extent(self) -> np.ndarray:
        """World size (m) of the heightfield along x and y."""
        return (np.asarray(self.heights.shape[::-1]) - 1) * self.spacing

    def height_at(self, x, y):
        """Ground height (m) at world ``x``, ``y`` (numpy arrays or torch tensors, any equal shape): see
        :func:`height_at`."""
        heights = self.heights
        if type(x).__module__.split(".")[0] == "torch":  # one copy per device and dtype, kept
            key = (str(x.device), x.dtype)
            if key not in self._tensors:
                self._tensors[key] = sys.modules["torch"].as_tensor(heights, device=x.device, dtype=x.dtype)
            heights = self._tensors[key]
        return height_at(heights, self.origin, self.spacing, x, y)

    def lowest_near(self, x, y, radius: float) -> np.ndarray:
        """The lowest ground height (m) within ``radius`` m of world ``x``, ``y`` (numpy, any equal shape; sampled
        every ``spacing``): the deploy loop measures base heights from it, so a robot whose base is above a step
        while its feet are below is not fallen."""
        ox, oy = _disc(radius, self.spacing)
        x, y = np.asarray(x, np.float64)[..., None], np.asarray(y, np.float64)[..., None]
        return self.height_at(x + ox, y + oy).min(-1)

    def patch_of(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        """(row, col) int arrays: the patch index (into ``spawn`` etc.) at world ``x``, ``y``; -1 off the patches."""
        cfg, x, y = self.config, np.asarray(x, np.float64), np.asarray(y, np.float64)
        if cfg.layout != "grid":  # one patch: the whole field
            inside = ((x >= self.origin[0]) & (x <= self.origin[0] + self.extent[0])
                      & (y >= self.origin[1]) & (y <= self.origin[1] + self.extent[1]))
            zero = np.where(inside, 0, -1)
            return zero, zero.copy()
        lo = self.spawn[0, 0, :2] - cfg.size / 2
        r = np.floor((y - lo[1]) / cfg.size).astype(int)
        c = np.floor((x - lo[0]) / cfg.size).astype(int)
        ok = (r >= 0) & (r < self.spawn.shape[0]) & (c >= 0) & (c < self.spawn.shape[1])
        return np.where(ok, r, -1), np.where(ok, c, -1)

    def find(self, kind: str, level: int) -> list[tuple[int, int]]:
        """Every (row, col) patch of type ``kind`` at ``level``."""
        if kind not in self.type_names:
            raise TerrainError(f"unknown terrain type {kind!r} (known: {list(self.type_names)})")
        hit = (self.type_ids == self.type_names.index(kind)) & (self.levels == level)
        return [(int(r), int(c)) for r, c in zip(*np.nonzero(hit), strict=True)]

    def describe(self, row: int, col: int) -> str:
        """One line: the patch's type, level and parameter."""
        if self.config.layout == "stairs":
            s = self.config.stairs
            return (f"stairs corridor: {s.steps_up} steps up, {s.platform:g} m platform, {s.steps_down} down, "
                    f"{s.step_height * 100:g} cm x {s.step_width * 100:g} cm, {s.width:g} m wide")
        kind, value = self.type_names[self.type_ids[row, col]], self.scale[row, col]
        if kind == "flat":
            value = "flat"
        elif "slope" in kind:
            value = f"slope {value:+.3f}"
        else:
            value = f"{'step' if 'stairs' in kind else 'height'} {value:+.3f} m"
        return f"{kind} level {self.levels[row, col]} (difficulty {self.difficulty[row, col]:.2f}, {value})"

    def apply(self, spec, floor_geom: str | None) -> None:
        """Make ``spec``'s (``mujoco.MjSpec``) floor geom ``floor_geom`` this terrain's heightfield, in place:
        same name, friction, contact bits, priority, condim, material; a new ``hfield`` asset
        ``robo_ppo_terrain``; unless ``config.native_ccd``, the MPR collision option. The floor must be a
        world-body geom.

        Raises:
            TerrainError: the spec has no such geom, or it is not in the world body."""
        import mujoco

        geom = spec.geom(floor_geom) if floor_geom else None
        if geom is None:
            raise TerrainError(f"the scene has no floor geom {floor_geom!r} to replace by the terrain (floor_geom)")
        if geom.parent.name != spec.worldbody.name:
            raise TerrainError(f"the floor geom {floor_geom!r} is not in the world body")
        h = self.heights.astype(np.float64)
        lo, hi = float(h.min()), float(h.max())
        rise = hi - lo
        data = (h - lo) / rise if rise > 0 else np.zeros_like(h)
        half = self.extent / 2
        name = "robo_ppo_terrain"
        while spec.hfield(name) is not None:
            name += "_"
        spec.add_hfield(name=name, size=[float(half[0]), float(half[1]), max(rise, 1e-6), self.config.base_thickness],
                        nrow=h.shape[0], ncol=h.shape[1], userdata=data.ravel().astype(np.float32).tolist())
        geom.type = mujoco.mjtGeom.mjGEOM_HFIELD
        geom.hfieldname = name
        geom.pos = [float(self.origin[0] + half[0]), float(self.origin[1] + half[1]), lo]
        geom.quat = [1.0, 0.0, 0.0, 0.0]
        if not self.config.native_ccd:
            spec.option.disableflags |= int(mujoco.mjtDisableBit.mjDSBL_NATIVECCD)


def height_at(heights, origin, spacing: float, x, y):
    """Ground height of a heightfield at world ``x``, ``y``: exactly MuJoCo's surface, which joins the
    samples by two triangles per cell, split along the diagonal from sample (i, j) to (i + 1, j + 1).

    ``heights`` ``[ny, nx]``, ``heights[j, i]`` at ``origin + (i, j) * spacing``; ``x``, ``y`` any shape, numpy or torch
    (``heights`` then a tensor on their device). Outside the field, the nearest edge's height (MuJoCo has
    no ground there)."""
    torch_in = type(x).__module__.split(".")[0] == "torch"
    xp = sys.modules["torch"] if torch_in else np
    ny, nx = heights.shape
    fx = xp.clip((x - float(origin[0])) / spacing, 0, nx - 1)
    fy = xp.clip((y - float(origin[1])) / spacing, 0, ny - 1)
    i, j = xp.floor(fx), xp.floor(fy)
    i = xp.clip(i, 0, nx - 2) if nx > 1 else i * 0
    j = xp.clip(j, 0, ny - 2) if ny > 1 else j * 0
    tx, ty = fx - i, fy - j
    i, j = (i.long(), j.long()) if torch_in else (i.astype(np.int64), j.astype(np.int64))
    i1, j1 = xp.clip(i + 1, 0, nx - 1), xp.clip(j + 1, 0, ny - 1)
    h00, h10, h01, h11 = heights[j, i], heights[j, i1], heights[j1, i], heights[j1, i1]
    lower = h00 + tx * (h10 - h00) + ty * (h11 - h10)   # tx >= ty: the triangle (i,j), (i+1,j), (i+1,j+1)
    upper = h00 + ty * (h01 - h00) + tx * (h11 - h01)   # tx < ty: the triangle (i,j), (i,j+1), (i+1,j+1)
    return xp.where(tx >= ty, lower, upper)


# ------------------------------------------------------------------ generate
def generate(config: Any = None) -> Terrain | None:
    """The terrain of ``config`` (anything :func:`load` takes); None for ``layout: none``.

    Raises:
        TerrainError: a config that does not check."""
    cfg = load(config)
    if cfg.layout == "none":
        return None
    hs = cfg.horizontal_scale
    nb = int(round(cfg.border / hs))
    if cfg.layout == "stairs":
        return _generate_corridor(cfg, nb)
    n = int(round(cfg.size / hs))  # samples per patch side
    r0, r1, c0, c1 = cfg.window if cfg.window is not None else (0, cfg.num_rows, 0, cfg.num_cols)
    rows, cols = np.arange(r0, r1), np.arange(c0, c1)
    nr, nc = len(rows), len(cols)
    heights = np.zeros((2 * nb + nr * n + 1, 2 * nb + nc * n + 1))
    share = np.cumsum(cfg.proportions())
    col_types = np.array([min(int(np.searchsorted(share, (c + 0.5) / cfg.num_cols, side="right")),
                              len(TERRAIN_TYPES) - 1) for c in range(cfg.num_cols)])
    difficulty = rows / (cfg.num_rows - 1) if cfg.num_rows > 1 else np.ones(nr)
    scale = np.zeros((nr, nc))
    for a, r in enumerate(rows):
        for b, c in enumerate(cols):
            rng = np.random.default_rng(np.random.SeedSequence([int(cfg.seed) & 0xFFFFFFFF, int(r), int(c)]))
            j0, i0 = nb + a * n, nb + b * n  # first sample along y (rows) and x (columns)
            # the patch's own samples [0, n), plus the shared edge sample n where no patch follows
            nj = n + (1 if a == nr - 1 else 0)
            ni = n + (1 if b == nc - 1 else 0)
            local = np.arange(max(ni, nj)) * hs
            z, scale[a, b] = _patch(TERRAIN_TYPES[col_types[c]], cfg, float(difficulty[a]), local[:ni], local[:nj], rng)
            heights[j0:j0 + nj, i0:i0 + ni] = z
    extent = (np.asarray(heights.shape[::-1]) - 1) * hs
    origin = -extent / 2
    cy, cx = np.meshgrid(origin[1] + (nb + (np.arange(nr) + 0.5) * n) * hs,
                         origin[0] + (nb + (np.arange(nc) + 0.5) * n) * hs, indexing="ij")
    centre = np.stack([cx, cy], -1)
    terrain = Terrain(config=cfg, heights=heights.astype(np.float32), origin=origin, spacing=hs,
                      type_names=TERRAIN_TYPES + (CORRIDOR,), type_ids=np.repeat(col_types[cols][None], nr, 0),
                      levels=np.repeat(rows[:, None], nc, 1), difficulty=np.repeat(difficulty[:, None], nc, 1),
                      scale=scale, spawn=np.zeros((nr, nc, 3)), rows=rows, cols=cols)
    terrain.spawn = _spawn(terrain, centre)
    return terrain


def _generate_corridor(cfg: TerrainConfig, nb: int) -> Terrain:
    s, hs = cfg.stairs, cfg.horizontal_scale
    length = 2 * s.approach + (s.steps_up + s.steps_down) * s.step_width + s.platform
    width = s.width + 2 * (s.wall_thickness if s.wall_height > 0 else 0.0)
    nx = int(math.ceil(length / hs - _EPS)) + 2 * nb + 1
    ny = int(math.ceil(width / hs - _EPS)) + 2 * nb + 1
    x = (np.arange(nx) - nb) * hs                      # from the approach's start
    y = (np.arange(ny) - (ny - 1) / 2) * hs            # from the centre line
    heights = _corridor(cfg, x, y)
    extent = (np.asarray(heights.shape[::-1]) - 1) * hs
    origin = -extent / 2
    one = np.ones((1, 1))
    terrain = Terrain(config=cfg, heights=heights.astype(np.float32), origin=origin, spacing=hs,
                      type_names=TERRAIN_TYPES + (CORRIDOR,), type_ids=np.full((1, 1), len(TERRAIN_TYPES)),
                      levels=np.zeros((1, 1), int), difficulty=one.copy(), scale=one * s.step_height,
                      spawn=np.zeros((1, 1, 3)), rows=np.zeros(1, int), cols=np.zeros(1, int))
    terrain.spawn = _spawn(terrain, np.array([[[origin[0] + (nb * hs) + s.approach / 2, 0.0]]]))
    return terrain


def _disc(radius: float, spacing: float) -> tuple[np.ndarray, np.ndarray]:
    """x, y offsets of a square lattice of ``spacing`` inside a disc of ``radius`` (the centre included)."""
    k = int(math.ceil(radius / spacing))
    off = np.arange(-k, k + 1) * spacing
    ox, oy = np.meshgrid(off, off, indexing="ij")
    keep = ox ** 2 + oy ** 2 <= radius ** 2 + _EPS
    return ox[keep], oy[keep]


def _spawn(terrain: Terrain, centre: np.ndarray) -> np.ndarray:
    """``centre [R, C, 2]`` with the highest ground within ``spawn_radius`` of each: ``[R, C, 3]``."""
    ox, oy = _disc(terrain.config.spawn_radius, terrain.spacing)
    z = terrain.height_at(centre[..., 0:1] + ox, centre[..., 1:2] + oy).max(-1)
    return np.concatenate([centre, z[..., None]], -1)


# ------------------------------------------------------------------ deploy
@dataclass(eq=False)
class Placement:
    """Where a robot starts on a terrain: patch (``row``, ``col``) of ``terrain`` (:func:`place`)."""

    terrain: Terrain
    row: int
    col: int

    @property
    def spawn(self) -> np.ndarray:
        """World x, y and ground height z (m) of the start."""
        return self.terrain.spawn[self.row, self.col].copy()

    def describe(self) -> str:
        x, y, z = self.spawn
        return f"{self.terrain.describe(self.row, self.col)}; start at ({x:.2f}, {y:.2f}) m, ground {z:+.3f} m"

    def to_dict(self) -> dict[str, Any]:
        t = self.terrain
        return {"type": t.type_names[t.type_ids[self.row, self.col]], "level": int(t.levels[self.row, self.col]),
                "difficulty": float(t.difficulty[self.row, self.col]), "scale": float(t.scale[self.row, self.col]),
                "spawn": [float(v) for v in self.spawn], "seed": t.config.seed, "layout": t.config.layout}


def add_arguments(parser) -> None:
    """Add the deploy loop's terrain options to an ``argparse`` parser: ``--terrain`` (a type, a preset or a
    config file), ``--level`` and ``--terrain-seed``; read them back with :func:`place_from_args`."""
    parser.add_argument("--terrain", default=None,
                        help="start on generated terrain: a type (" + ", ".join(TERRAIN_TYPES) + "), a "
                             "preset (" + ", ".join(PRESETS) + ") or a terrain config .yaml/.json")
    parser.add_argument("--level", type=int, default=None, help="--terrain: the level (grid row) to start on (default 0)")
    parser.add_argument("--terrain-seed", type=int, default=None,
                        help="--terrain: the generator's seed (default: the config's); also picks the column of a grid")


def place_from_args(args) -> Placement | None:
    """The start that :func:`add_arguments`' options ask for (:func:`place`); None without ``--terrain``.

    Raises:
        TerrainError: ``--level`` or ``--terrain-seed`` without ``--terrain``, or as :func:`place`."""
    if args.terrain is None:
        if args.level is not None or args.terrain_seed is not None:
            raise TerrainError("--level and --terrain-seed need --terrain")
        return None
    return place(args.terrain, level=args.level, seed=args.terrain_seed)


def place(spec: Any, level: int | None = None, seed: int | None = None, neighbours: int = 1) -> Placement | None:
    """A start for the deploy loop: on a patch of a terrain generated by :func:`generate`.

    ``spec``: a type of :data:`TERRAIN_TYPES` (the ``rough`` preset with every column of that type), a preset
    name or a config file/mapping (:func:`load`). ``level``: the patch row (default 0; ignored by the stairs
    corridor). ``seed``: the generator seed (default: the config's); for a grid of several types it also picks
    the column. Only the rows ``level +- neighbours`` are generated (every column: the robot, facing +x,
    walks along its level), with the full grid's heights there (``window``). None for ``layout: none``.

    Raises:
        TerrainError: an unknown type or preset, a bad file, or a level outside the grid."""
    one_type = isinstance(spec, str) and spec in TERRAIN_TYPES
    if one_type:
        cfg = TerrainConfig.from_dict(PRESETS["rough"])
        for t in TERRAIN_TYPES:
            getattr(cfg, t).proportion = 1.0 if t == spec else 0.0
    else:
        cfg = copy.deepcopy(load(spec))  # the caller's config stays as it is
    if seed is not None:
        cfg.seed = int(seed)
    if cfg.layout == "none":
        return None
    if cfg.layout == "stairs":
        return Placement(generate(cfg), 0, 0)
    level = 0 if level is None else int(level)
    if not 0 <= level < cfg.num_rows:
        raise TerrainError(f"level {level} is outside the terrain's levels 0 .. {cfg.num_rows - 1}")
    col = cfg.num_cols // 2 if one_type else int(np.random.default_rng(cfg.seed).integers(cfg.num_cols))
    k = max(int(neighbours), 0)
    r0 = max(level - k, 0)
    cfg.window = [r0, min(level + k + 1, cfg.num_rows), 0, cfg.num_cols]
    cfg.check()
    return Placement(generate(cfg), level - r0, col)
