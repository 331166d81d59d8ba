#!/usr/bin/env bash
# One prepared GPU session for the robot tasks on MuJoCo Warp (issue #23 item 6; docs/go1.md "On a GPU").
#
#   OUT=gpu_out bash benchmarks/gpu_robots.sh [seconds per training run]
#
# 1. Trains the Go1 (conf/env/go1_joystick.yaml: the shared recipe, randomization and mismatch included), or
#    the G1, on MuJoCo Warp, the runs named in SHAPES side by side on the one GPU, each stopped by SIGINT
#    after the given seconds (default 240, process start and kernel compile included), with a checkpoint
#    every 1.64M steps (d: every 1.02M):
#      a: 4096 envs x 20 steps, 16 minibatches of 5,120 x 5 epochs, curricula over 6M steps
#      b: 8192 envs x 20 steps, 32 minibatches of 5,120 x 4 epochs (MuJoCo Playground's Go1 shape; the
#         preset's shape in session 2), curricula over 12M steps
#      c: 4096 envs x 20 steps, 32 minibatches of 2,560 x 5 epochs, the CPU recipe's curricula (1.5M steps):
#         the CPU recipe (conf/env/_joystick_base.yaml) at 8x the envs, its minibatch size and minibatch
#         steps per sample kept
#      d: the CPU recipe itself (512 envs x 20, 4 minibatches x 5 epochs) on MuJoCo Warp: the engine's check
#      e: the CPU recipe's update per iteration (4 minibatches x 5 epochs: 20 Adam steps) on 8x the envs
#         (4096; minibatches of 20,480) and its curricula 8x as long in steps (12M), so as many iterations;
#         a checkpoint every 2.05M steps: `preset=mjwarp_gpu` since session 3
#      g: the G1 (conf/env/g1_joystick.yaml) as c: 4096 envs, 32 minibatches x 5 epochs, its own curricula,
#         a checkpoint every 3.3M steps
#      h: the Berkeley Humanoid as g, with the G1's ramps (randomize_curriculum from 5M to 7M steps, the
#         mismatch from 7M to 8.5M)
#      i: h with the added damping drawn from 0-2 kd instead of 0-5 kd (at 5 kd the explicit damping step
#         h rho(M^-1 D) is 2.08, past explicit Euler's bound of 2; export/harness.py damping_step)
#    The CPU recipe takes 20 minibatch steps per 10,240 samples and ramps its curricula over 1.5M steps
#    (146 iterations); at 82k-164k samples per iteration the same 1.5M steps would be 9-18 iterations.
#    Session 2 (docs/go1.md) ran SHAPES="a b" for 240 s; session 3 SHAPES="c d h i", then SHAPES="e" alone.
# 2. Exports every checkpoint to ONNX (robo-ppo-export; parity checked) and runs each in the deploy loop
#    (export/deploy.py, 20 random 5 s segments, seeds 0-2): $OUT/eval.txt has one line per checkpoint and
#    seed (run, steps, training seconds at that step from metrics.csv, MAE vx vy yaw, falls, goal met).
# 3. Measures SPS at 4096 and 8192 envs for the robots in ROBOTS (default: Spot, the Berkeley Humanoid, the
#    G1; ROBOTS="" skips it) (benchmarks/robot_throughput.py --device cuda: the task with random actions and
#    training end to end).
# Writes $OUT/go1_runs.tar.gz (metrics, configs, logs, each run's last ONNX and its first at the goal),
# $OUT/eval.txt, $OUT/thr_<env>.json and $OUT/log.txt.
# Needs robo_ppo with '.[robots,mjwarp]' and a CUDA torch. From a source tree on PYTHONPATH instead of a pip
# install, first link what the wheel maps (pyproject's package-dir): `ln -s ../export robo_ppo/deploy_kit;
# ln -s ../conf robo_ppo/conf; ln -s ../policies robo_ppo/policies`; leave MUJOCO_GL unset for training where
# no EGL library is installed (`import mujoco` fails with MUJOCO_GL=egl there).
# EXTRA (environment variable) is appended to every training command (a CPU smoke test: EXTRA="device=cpu
# algo.num_envs=64 algo.num_minibatches=4 checkpoint_interval=2").
set -u
OUT=${OUT:-gpu_out}
SECONDS_PER_RUN=${1:-240}
SHAPES=${SHAPES-c d h i}
EXTRA=${EXTRA:-}
ROBOTS=${ROBOTS-spot_joystick berkeley_humanoid_joystick g1_joystick}
PY=${PY:-python3}
RUNS=${RUNS:-runs_gpu}
mkdir -p "$OUT" "$RUNS"
export PYTHONUNBUFFERED=1
log() { echo "[$(date +%T)] $*" | tee -a "$OUT/log.txt"; }
log "start; $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo no GPU)"

train() {   # name, env, then overrides
  local name=$1 env=$2; shift 2
  timeout -s INT "$SECONDS_PER_RUN" $PY -m robo_ppo.train env="$env" progress=false keep_checkpoints=0 \
    total_timesteps=1000000000 hydra.run.dir="$RUNS/$name" "$@" $EXTRA > $RUNS/"$name".log 2>&1
  log "$name: exit $? after $(tail -1 $RUNS/"$name"/metrics.csv 2>/dev/null | cut -d, -f1-3) (iteration, steps, s)"
}
curricula() {   # steps of the penalty and command ramps, and of the mismatch ramp's wait and length
  echo env.task_params.events.penalties.params.steps="$1" env.task_params.events.command_ranges.params.steps="$1" \
       env.task_params.events.mismatch.params.begin="$1" env.task_params.events.mismatch.params.steps="$1"
}
GPU="engine=mjwarp device=auto eval_interval=0"   # the env file's recipe on MuJoCo Warp (what the preset keeps)
PER_SAMPLE="algo.num_envs=4096 algo.num_minibatches=32"   # 8x the envs, the CPU's Adam steps per sample (c, g, h, i)
G1_RAMPS="env.task_params.events.mismatch.params.begin=7000000"   # h, i: the G1's ramps (with the event below)
RAMP_EVENT="+env.task_params.events.randomize_ramp={fn: randomize_curriculum, params: {start: 0.0, begin: 5000000, steps: 2000000}}"
shape() {   # one run, by letter (the list in the header)
  case $1 in
    a) train go1_a go1_joystick preset=mjwarp_gpu algo.num_envs=4096 algo.num_minibatches=16 algo.update_epochs=5 \
         checkpoint_interval=20 $(curricula 6000000) ;;
    b) train go1_b go1_joystick preset=mjwarp_gpu algo.num_envs=8192 algo.num_minibatches=32 algo.update_epochs=4 \
         checkpoint_interval=10 ;;
    c) train go1_c go1_joystick $GPU $PER_SAMPLE checkpoint_interval=20 ;;
    d) train go1_d go1_joystick $GPU checkpoint_interval=100 ;;
    e) train go1_e go1_joystick $GPU algo.num_envs=4096 checkpoint_interval=25 $(curricula 12000000) ;;
    g) train g1_c g1_joystick $GPU $PER_SAMPLE checkpoint_interval=40 ;;
    h) train bh_ramp berkeley_humanoid_joystick $GPU $PER_SAMPLE checkpoint_interval=40 "$RAMP_EVENT" $G1_RAMPS ;;
    i) train bh_ramp_cap berkeley_humanoid_joystick $GPU $PER_SAMPLE checkpoint_interval=40 "$RAMP_EVENT" $G1_RAMPS \
         "env.task_params.events.randomize.params.damping_kd=[0.0, 2.0]" ;;
    *) log "unknown shape $1" ;;
  esac
}
# shellcheck disable=SC2046
for s in $SHAPES; do shape "$s" & done
wait

log "exporting $(ls $RUNS/*/checkpoints/*.pt 2>/dev/null | wc -l) checkpoints"
ls $RUNS/*/checkpoints/*.pt 2>/dev/null | xargs -P 8 -I{} sh -c \
  'o=$(dirname $(dirname {}))/onnx/$(basename {} .pt).onnx; mkdir -p $(dirname $o);
   '"$PY"' -m robo_ppo.export checkpoint={} output=$o > $o.log 2>&1 || echo "export failed: {}"'
log "deploy loop: every checkpoint, seeds 0-2"
evaluate() {   # one ONNX file: a line per seed
  local onnx=$1 run steps secs
  run=$(basename "$(dirname "$(dirname "$onnx")")"); steps=$(basename "$onnx" .onnx | sed 's/^ckpt_0*//')
  secs=$(awk -F, -v s="$steps" '$2 == s {print $3}' "$(dirname "$(dirname "$onnx")")/metrics.csv")
  for seed in 0 1 2; do
    $PY export/deploy.py "$onnx" --schedule random --segments 20 --seed $seed --json "$onnx.s$seed.json" >/dev/null 2>&1
    $PY -c "import json,sys; from robo_ppo.config import DeployCheckConfig; from robo_ppo.deploy_check import meets_goal
m = json.load(open(sys.argv[1]))['summary']   # the goal: deploy_check's (robo-ppo-train's end-of-run check)
print(sys.argv[2], sys.argv[3], sys.argv[4] or '-', 'seed', sys.argv[5], 'mae %.3f %.3f %.3f falls %d goal %s' % (
      m['mean_abs_vx_err'], m['mean_abs_vy_err'], m['mean_abs_yaw_rate_err'], m['falls'],
      meets_goal(m, DeployCheckConfig().goal)))" \
      "$onnx.s$seed.json" "$run" "$steps" "$secs" $seed 2>/dev/null || echo "$run $steps eval failed (seed $seed)"
  done
}
export -f evaluate; export PY
# no rendering here: MUJOCO_GL=disable keeps the kit's harness from choosing EGL (its default without a
# display), which fails at `import mujoco` where PyOpenGL finds no EGL platform (the H200 machine, session 3)
export MUJOCO_GL=${MUJOCO_GL:-disable}
ls $RUNS/*/onnx/*.onnx 2>/dev/null | xargs -P 12 -I{} bash -c 'evaluate {}' | sort -k1,1 -k2,2n > "$OUT/eval.txt"
log "evaluated: $(wc -l < "$OUT/eval.txt") lines; each run's first checkpoint at the goal (run, steps, s, seeds):"
for need in 1 3; do   # on seed 0 (the shipped controllers' table), on all of seeds 0-2
  awk -v need=$need '{k=$1" "$2; if ($NF=="True" && ($5==0 || need==3)) ok[k]++; t[k]=$3}
       END {for (k in ok) if (ok[k]>=need) print k, t[k], (need==1 ? "seed 0" : "seeds 0-2")}' "$OUT/eval.txt" |
    sort -k1,1 -k2,2n | awk '!seen[$1]++'
done | tee -a "$OUT/log.txt" > "$RUNS/first_goal.txt"
keep=$(cd "$RUNS" && for r in */; do ls "$r"onnx/*.onnx 2>/dev/null | tail -1; done
       awk '{printf "%s/onnx/ckpt_%010d.onnx\n", $1, $2}' first_goal.txt | sort -u)   # each run's last and first-at-goal ONNX
tar czf "$OUT"/go1_runs.tar.gz -C "$RUNS" $(cd "$RUNS" && echo *.log */metrics.csv */config.yaml */train.log) $keep \
  2>>"$OUT/log.txt"
log "runs archived: $(du -h "$OUT"/go1_runs.tar.gz | cut -f1)"

for env in $ROBOTS; do
  timeout 75 $PY benchmarks/robot_throughput.py --device cuda --num-envs 4096 8192 --skip-cpu --train-iters 2 \
    --env "$env" --out "$OUT/thr_$env.json" > "$OUT/thr_$env.log" 2>&1
  log "$env throughput: exit $?; $(grep -E '^ +(task|train)_mjwarp' "$OUT/thr_$env.log" | tr -s ' ' | tr '\n' ';')"
done
log "done"
