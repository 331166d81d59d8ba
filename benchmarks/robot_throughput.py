"""Robot task throughput (the Go1 joystick, or another robot task with ``--env``): raw MuJoCo, the engines,
and robo_ppo end to end.

    python benchmarks/robot_throughput.py                                   # CPU: 1024 envs, 2 threads
    python benchmarks/robot_throughput.py --num-envs 256 1024 --mjwarp-envs 64
    python benchmarks/robot_throughput.py --device cuda --num-envs 4096 8192 --skip-cpu   # GPU (MuJoCo Warp)
    python benchmarks/robot_throughput.py --device cuda --num-envs 4096 8192 --skip-cpu --env g1_joystick

Rows (control steps/s = env steps/s; one control step = 5 physics steps of 4 ms):

* ``raw_rollout``: ``mujoco.rollout`` (persistent thread pool, one model copy per env) stepping
  the robot's training model 5 physics steps per call with constant controls: the threaded
  ``mj_step`` ceiling;
* ``physics_mujoco``: ``MujocoPhysics.step`` alone (the native engine: step2/step1 per substep,
  per-env ``MjData`` on a persistent pool, copies out to torch);
* ``task_mujoco`` / ``task_mjwarp``: the task through the VecEnv (``env.step``, random actions:
  physics + observation, reward terms, resets);
* ``train_mujoco`` / ``train_mjwarp``: ``robo-ppo-train env=go1_joystick`` end to end (rollout +
  PPO update) at the env file's recipe (``preset=mjwarp_gpu`` on CUDA), after one warm-up iteration;
* ``phases_mujoco``: where each second of a training iteration goes, from timers around
  ``Physics.step`` (physics), ``VecEnv.step`` minus physics (task: observation, rewards, resets),
  the rest of the rollout (policy: normalize, act, values, buffer writes, normalizer update) and
  ``Trainer._update`` (GAE and the PPO update), with end-to-end SPS over ``raw_rollout`` SPS, and
  MuJoCo's own stage timers over the same iterations (``mujoco_timers``: microseconds per call of
  position, collision, narrow phase, constraint, ...; contacts and constraint rows per env);
* ``update_cost`` (``--update-table``): the update and the rollout's policy forward per network size,
  epochs x minibatches and update threads (``steps/s``: samples per second of update).

Writes ``benchmarks/results/robot_throughput_<device>_<time>.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import measure  # noqa: E402

ENV = "go1_joystick"   # the robot task every row measures (--env)


def _robot(overrides=()):
    from robo_ppo.robots.description import parse_robot
    from robo_ppo.robots.model import RobotModel
    from robo_ppo.tasks.joystick import parse_params

    cfg = measure.compose_config([f"env={ENV}", *overrides])
    params = parse_params(dict(cfg.env.task_params))
    return RobotModel(parse_robot(cfg.env.robot), params.sim_dt), round(params.control_dt / params.sim_dt)


def raw_rollout(num_envs: int, threads: int, repeats: int = 5, seconds: float = 2.0) -> dict[str, Any]:
    """``mujoco.rollout`` of ``substeps`` physics steps per call, from the state it reached."""
    import copy

    import mujoco
    import mujoco.rollout
    import numpy as np

    robot, substeps = _robot()
    m = robot.model
    models = [copy.copy(m) for _ in range(num_envs)]
    datas = [mujoco.MjData(m) for _ in range(threads)]
    d = mujoco.MjData(m)
    d.qpos[:] = robot.init_qpos
    mujoco.mj_forward(m, d)
    spec = mujoco.mjtState.mjSTATE_FULLPHYSICS
    state0 = np.zeros(mujoco.mj_stateSize(m, spec))
    mujoco.mj_getState(m, d, state0, spec)
    state = np.tile(state0, (num_envs, 1))
    ctrl = np.zeros((num_envs, substeps, m.nu))
    ctrl[:, :, robot.act_ids] = robot.default_pose
    out_state = np.zeros((num_envs, substeps, state.shape[1]))
    out_sensor = np.zeros((num_envs, substeps, m.nsensordata))
    pool = mujoco.rollout.Rollout(nthread=threads)

    def step():
        pool.rollout(models, datas, state, ctrl, nstep=substeps, state=out_state, sensordata=out_sensor,
                     skip_checks=True)
        state[:] = out_state[:, -1]

    sps = measure._timed_repeats(step, num_envs, repeats, seconds)
    pool.close()
    return {"kind": "raw_rollout", "num_envs": num_envs, "threads": threads, "sps": measure._summary(sps)}


def physics_mujoco(num_envs: int, threads: int, repeats: int = 5, seconds: float = 2.0) -> dict[str, Any]:
    import torch

    from robo_ppo.envs.mujoco_physics import MujocoPhysics

    robot, substeps = _robot()
    ph = MujocoPhysics(robot.model, num_envs, num_threads=threads)
    ctrl = torch.zeros(num_envs, robot.model.nu)
    ctrl[:, torch.as_tensor(robot.act_ids)] = torch.as_tensor(robot.default_pose, dtype=torch.float32)
    sps = measure._timed_repeats(lambda: ph.step(ctrl, substeps), num_envs, repeats, seconds)
    ph.close()
    return {"kind": "physics_mujoco", "num_envs": num_envs, "threads": threads, "sps": measure._summary(sps)}


def phases(overrides: list[str], iterations: int = 3, warmup: int = 1) -> dict[str, Any]:
    """Seconds per training iteration in each phase (medians over ``iterations`` after ``warmup``)."""
    import statistics
    import tempfile

    from robo_ppo.runner.trainer import Trainer

    cfg = measure.compose_config([*measure.BENCH_OVERRIDES, f"env={ENV}", *overrides])
    trainer = Trainer(cfg, tempfile.mkdtemp(prefix="robo_ppo_phases_"))
    clock: dict[str, float] = {"physics": 0.0, "env_step": 0.0}

    def timed(obj, name: str, key: str) -> None:
        fn = getattr(obj, name)

        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                clock[key] += time.perf_counter() - t0

        setattr(obj, name, wrapper)

    timed(trainer.envs.physics, "step", "physics")
    timed(trainer.envs, "step", "env_step")
    per_iter: list[dict[str, float]] = []
    for i in range(warmup + iterations):
        if i == warmup:
            _reset_mujoco_timers(trainer.envs.physics)
        clock.update(physics=0.0, env_step=0.0)
        trainer.iteration += 1
        trainer.ppo.begin_iteration(trainer.iteration)
        t0 = time.perf_counter()
        trainer._collect_rollout()
        t1 = time.perf_counter()
        trainer._update()
        t2 = time.perf_counter()
        if i >= warmup:
            per_iter.append({"physics": clock["physics"], "task": clock["env_step"] - clock["physics"],
                             "policy": (t1 - t0) - clock["env_step"], "update": t2 - t1, "total": t2 - t0})
    timers = _mujoco_timers(trainer.envs.physics)
    trainer.close()
    med = {k: statistics.median(p[k] for p in per_iter) for k in per_iter[0]}
    return {"kind": "phases_mujoco", "num_envs": int(cfg.algo.num_envs), "overrides": list(overrides),
            "seconds_per_iteration": {k: round(v, 3) for k, v in med.items()},
            "share": {k: round(v / med["total"], 3) for k, v in med.items() if k != "total"},
            "e2e_sps": {"median": trainer.steps_per_iteration / med["total"]}, "mujoco_timers": timers}


def _reset_mujoco_timers(physics) -> None:
    for d in getattr(physics, "datas", ()):
        for t in d.timer:
            t.duration, t.number = 0.0, 0


def _mujoco_timers(physics) -> dict[str, Any] | None:
    """Native MuJoCo's own stage timers (``MjData.timer``) summed over the envs: microseconds per call of each
    pipeline stage that ran (``mj_step1`` / ``mj_step2`` run the stages without counting as ``step``), and the
    envs' mean contacts and constraint rows at the end. None for an engine without ``MjData`` (MuJoCo Warp)."""
    import mujoco
    import numpy as np

    datas = getattr(physics, "datas", None)
    if not datas:
        return None
    stages = {}
    for name, k in mujoco.mjtTimer.__members__.items():
        if name == "mjNTIMER" or int(k) >= len(datas[0].timer):
            continue
        duration = sum(d.timer[int(k)].duration for d in datas)
        number = sum(d.timer[int(k)].number for d in datas)
        if number:
            stages[name.removeprefix("mjTIMER_").lower()] = round(1e6 * duration / number, 2)
    return {"us_per_call": stages, "ncon_mean": float(np.mean([d.ncon for d in datas])),
            "nefc_mean": float(np.mean([d.nefc for d in datas]))}


UPDATE_SIZES = [("128,128,128", "256,128,128"), ("128,128,128", "128,128,128"), ("128,128,128", "512,256,128"),
                ("256,128,128", "256,128,128"), ("512,256,128", "512,256,128")]
"""(actor, critic) hidden sizes of the update-cost table."""
UPDATE_SCHEDULES = [(4, 8, 1), (4, 8, 2), (4, 4, 2), (2, 4, 2), (5, 4, 2)]
"""(update_epochs, num_minibatches, update_threads) of the update-cost table."""


def update_costs(num_envs: int = 1024, repeats: int = 2) -> list[dict[str, Any]]:
    """Seconds of ``Trainer._update`` over one ``num_envs`` x 20-step Go1 rollout, and of the rollout's
    policy forward (``normalize`` + ``act`` with the critic) for 20 steps, per network size and update
    schedule (best of ``repeats``). One rollout is collected once and its buffer reused by every row."""
    import tempfile

    import torch

    from robo_ppo.runner.trainer import Trainer

    quiet = [*measure.BENCH_OVERRIDES, f"env={ENV}"]
    source = Trainer(measure.compose_config([*quiet, f"algo.num_envs={num_envs}"]), tempfile.mkdtemp())
    source.iteration = 1
    source.ppo.begin_iteration(1)
    source._collect_rollout()
    obs_dim, critic_dim = source.envs.obs_dim, source.envs.critic_obs_dim
    rows = []

    def best(fn) -> float:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times)

    for actor, critic in UPDATE_SIZES:
        for epochs, minibatches, threads in UPDATE_SCHEDULES:
            cfg = measure.compose_config([*quiet, f"algo.num_envs={num_envs}", f"algo.actor_hidden_sizes=[{actor}]",
                                          f"algo.critic_hidden_sizes=[{critic}]", f"algo.update_epochs={epochs}",
                                          f"algo.num_minibatches={minibatches}", f"update_threads={threads}"])
            tr = Trainer(cfg, tempfile.mkdtemp())
            tr.buffer = source.buffer   # same shapes: the rollout's data, this row's networks
            pol = tr.policy
            obs, cobs = torch.randn(num_envs, obs_dim), torch.randn(num_envs, critic_dim)
            noise = torch.randn(num_envs, tr.envs.action_space.shape[0])

            @torch.no_grad()
            def forward(pol=pol, obs=obs, cobs=cobs, noise=noise):
                for _ in range(20):
                    pol.act(pol.normalize(obs), noise=noise, norm_critic_obs=pol.normalize_critic(cobs))

            update_s = best(tr._update)
            rows.append({"kind": "update_cost", "num_envs": num_envs, "actor": actor, "critic": critic,
                         "update_epochs": epochs, "num_minibatches": minibatches, "update_threads": threads,
                         "update_s": round(update_s, 3), "forward_20_steps_s": round(best(forward), 3),
                         "sps": {"median": num_envs * 20 / update_s}})
            tr.close()
    source.close()
    return rows


def task_cuda(num_envs: int, steps: int = 200) -> dict[str, Any]:
    """The task on MuJoCo Warp on CUDA through the VecEnv, synchronized at the ends only."""
    import torch

    from robo_ppo.envs import make_vec_env

    cfg = measure.compose_config([f"env={ENV}", "engine=mjwarp"])
    env = make_vec_env(cfg.env, cfg.engine, num_envs, device="cuda", seed=0)
    env.reset(seed=0)
    acts = torch.rand(16, num_envs, env.action_space.shape[0], device="cuda") * 2 - 1
    out = []
    for rep in range(4):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for i in range(steps):
            env.step(acts[i & 15])
        torch.cuda.synchronize()
        if rep:                      # the first block captures the CUDA graphs
            out.append(num_envs * steps / (time.perf_counter() - t0))
    env.close()
    return {"kind": "task_mjwarp", "env": ENV, "num_envs": num_envs, "device": "cuda", "sps": measure._summary(out)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    global ENV
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default=ENV, help="the robot task (conf/env/<name>.yaml), e.g. spot_joystick")
    p.add_argument("--num-envs", type=int, nargs="+", default=[1024])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--mjwarp-envs", type=int, nargs="*", default=[64],
                   help="MuJoCo Warp on the CPU device (slow; 0 or none to skip)")
    p.add_argument("--device", default="cpu", help="cpu, or cuda for the MuJoCo Warp GPU rows")
    p.add_argument("--skip-cpu", action="store_true", help="only the MuJoCo Warp rows")
    p.add_argument("--train-iters", type=int, default=3)
    p.add_argument("--update-table", action="store_true",
                   help="also the update-cost table: network sizes x epochs, minibatches, threads (~6 min)")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    ENV = args.env
    import torch

    torch.set_num_threads(1)
    rows = []

    def add(row):
        rows.append(row)
        print(json.dumps(row), flush=True)

    load0 = os.getloadavg()
    for n in args.num_envs:
        if not args.skip_cpu:
            add(raw_rollout(n, args.threads))
            add(physics_mujoco(n, args.threads))
            add({**measure.adapter_engine("mujoco", ENV, n, [f"engine.num_threads={args.threads}"]),
                 "kind": "task_mujoco"})
            train = measure.robo_ppo_train([f"env={ENV}", f"algo.num_envs={n}",
                                            f"engine.num_threads={args.threads}"], iterations=args.train_iters)
            raw = rows[-3]["sps"]["median"]
            add({**train, "kind": "train_mujoco", "e2e_over_raw": round(train["e2e_sps"]["median"] / raw, 3)})
            add(phases([f"algo.num_envs={n}", f"engine.num_threads={args.threads}"], iterations=args.train_iters))
        if args.device.startswith("cuda"):
            add(task_cuda(n))
            add({**measure.robo_ppo_train([f"env={ENV}", "preset=mjwarp_gpu", f"algo.num_envs={n}",
                                           f"device={args.device}"], iterations=args.train_iters),
                 "kind": "train_mjwarp"})
    if args.update_table:
        for row in update_costs(args.num_envs[0]):
            add(row)
    if not args.device.startswith("cuda"):
        for n in [n for n in args.mjwarp_envs if n]:
            add({**measure.adapter_engine("mjwarp", ENV, n, ["device=cpu"], repeats=3, seconds=3.0),
                 "kind": "task_mjwarp_cpu"})
    result = {"machine": {"loadavg_start": load0, "loadavg_end": os.getloadavg(), "cpus": os.cpu_count(),
                          "device": args.device, "env": ENV, "command": " ".join([sys.executable, *sys.argv])},
              "rows": rows}
    print(f"\n{'row':>16} {'envs':>6} {'steps/s':>9}")
    for r in rows:
        value = (r["sps"] if "sps" in r else r["e2e_sps"])["median"]
        note = ""
        if r["kind"] == "update_cost":
            note = (f"  update {r['update_s']:.2f} s: actor {r['actor']}, critic {r['critic']}, {r['update_epochs']} x "
                    f"{r['num_minibatches']}, {r['update_threads']} threads; forward {r['forward_20_steps_s']:.2f} s")
        elif "seconds_per_iteration" in r:
            note = "  " + ", ".join(f"{k} {v:.2f} s" for k, v in r["seconds_per_iteration"].items())
            if r.get("mujoco_timers"):
                us, t = r["mujoco_timers"]["us_per_call"], r["mujoco_timers"]
                note += (f"\n{'':>33}MuJoCo, us per call: " + ", ".join(
                    f"{k} {us[k]:.1f}" for k in ("position", "pos_collision", "col_narrow", "constraint") if k in us)
                    + f"; contacts {t['ncon_mean']:.1f}, constraint rows {t['nefc_mean']:.1f} per env")
        elif "e2e_over_raw" in r:
            note = f"  {100 * r['e2e_over_raw']:.0f}% of raw_rollout"
        print(f"{r['kind']:>16} {r['num_envs']:>6} {value:>9.0f}{note}")
    measure.write_result(result, args.out, f"robot_throughput_{args.device}" + ("" if ENV == "go1_joystick" else f"_{ENV}"))
    return result


if __name__ == "__main__":
    main()
