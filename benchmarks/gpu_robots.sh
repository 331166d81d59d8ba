#!/usr/bin/env bash
# One prepared GPU session for the robot tasks on MuJoCo Warp (issue #23 item 6; docs/go1.md "On a GPU").
#
#   OUT=gpu_out bash benchmarks/gpu_robots.sh [seconds per training run]
#
# 1. Trains the Go1 (conf/env/go1_joystick.yaml: the shared recipe, randomization and mismatch included) on
#    MuJoCo Warp with the update shapes named in SHAPES side by side on the one GPU, each stopped by SIGINT
#    after the given seconds (default 240, process start and kernel compile included), with a checkpoint
#    every 1.64M steps (d: every 1.02M):
#      a: 4096 envs x 20 steps, 16 minibatches of 5,120 x 5 epochs, curricula over 6M steps
#      b: `preset=mjwarp_gpu` as it is: 8192 envs x 20 steps, 32 minibatches of 5,120 x 4 epochs (MuJoCo
#         Playground's Go1 shape), curricula over 12M steps
#      c: 4096 envs x 20 steps, 32 minibatches of 2,560 x 5 epochs, the CPU recipe's curricula (1.5M steps):
#         the CPU recipe's minibatch size and minibatch steps per sample, 8x the envs
#      d: the CPU recipe itself (512 envs x 20, 4 minibatches x 5 epochs) on MuJoCo Warp: the engine's check
#    The CPU recipe takes 20 minibatch steps per 10,240 samples and ramps its curricula over 1.5M steps
#    (146 iterations); at 82k-164k samples per iteration the same 1.5M steps would be 9-18 iterations.
#    Session 2 (docs/go1.md) ran SHAPES="a b" for 240 s; session 3 SHAPES="b c d".
# 2. Exports every checkpoint to ONNX (robo-ppo-export; parity checked) and runs each in the deploy loop
#    (export/deploy.py, 20 random 5 s segments, seeds 0-2): $OUT/eval.txt has one line per checkpoint and
#    seed (run, steps, training seconds at that step from metrics.csv, MAE vx vy yaw, falls, goal met).
# 3. Measures SPS at 4096 and 8192 envs for the robots in ROBOTS (default: Spot, the Berkeley Humanoid, the
#    G1; ROBOTS="" skips it) (benchmarks/robot_throughput.py --device cuda: the task with random actions and
#    training end to end).
# Writes $OUT/go1_runs.tar.gz (metrics, configs, logs, ONNX files), $OUT/eval.txt, $OUT/thr_<env>.json and
# $OUT/log.txt.
# Needs robo_ppo with '.[robots,mjwarp]' and a CUDA torch. From a source tree on PYTHONPATH instead of a pip
# install, first link what the wheel maps (pyproject's package-dir): `ln -s ../export robo_ppo/deploy_kit;
# ln -s ../conf robo_ppo/conf; ln -s ../policies robo_ppo/policies`; leave MUJOCO_GL unset where no EGL
# library is installed (`import mujoco` fails with MUJOCO_GL=egl there).
# EXTRA (environment variable) is appended to both training commands (a CPU smoke test: EXTRA="device=cpu
# algo.num_envs=64 algo.num_minibatches=4 checkpoint_interval=2").
set -u
OUT=${OUT:-gpu_out}
SECONDS_PER_RUN=${1:-240}
SHAPES=${SHAPES:-b c d}
EXTRA=${EXTRA:-}
ROBOTS=${ROBOTS:-spot_joystick berkeley_humanoid_joystick g1_joystick}
PY=${PY:-python3}
RUNS=${RUNS:-runs_gpu}
mkdir -p "$OUT" "$RUNS"
export PYTHONUNBUFFERED=1
log() { echo "[$(date +%T)] $*" | tee -a "$OUT/log.txt"; }
log "start; $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo no GPU)"

train() {   # name, then overrides
  local name=$1; shift
  timeout -s INT "$SECONDS_PER_RUN" $PY -m robo_ppo.train env=go1_joystick preset=mjwarp_gpu progress=false \
    keep_checkpoints=0 total_timesteps=1000000000 hydra.run.dir="$RUNS/$name" "$@" $EXTRA \
    > $RUNS/"$name".log 2>&1
  log "$name: exit $? after $(tail -1 $RUNS/"$name"/metrics.csv 2>/dev/null | cut -d, -f1-3) (iteration, steps, s)"
}
curricula() {   # steps of the penalty and command ramps, and of the mismatch ramp's wait and length
  echo env.task_params.events.penalties.params.steps="$1" env.task_params.events.command_ranges.params.steps="$1" \
       env.task_params.events.mismatch.params.begin="$1" env.task_params.events.mismatch.params.steps="$1"
}
shape() {   # one update shape's run, by letter (the list in the header)
  case $1 in
    a) train go1_a algo.num_envs=4096 algo.num_steps=20 algo.num_minibatches=16 algo.update_epochs=5 \
         checkpoint_interval=20 $(curricula 6000000) ;;
    b) train go1_b checkpoint_interval=10 ;;
    c) train go1_c algo.num_envs=4096 algo.num_minibatches=32 algo.update_epochs=5 checkpoint_interval=20 \
         $(curricula 1500000) ;;
    d) train go1_d algo.num_envs=512 algo.num_minibatches=4 algo.update_epochs=5 checkpoint_interval=100 \
         $(curricula 1500000) ;;
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
    $PY -c "import json,sys; d=json.load(open(sys.argv[1])); m=d['summary']
print(sys.argv[2], sys.argv[3], sys.argv[4] or '-', 'seed', sys.argv[5], 'mae %.3f %.3f %.3f falls %d goal %s' % (
      m['mean_abs_vx_err'], m['mean_abs_vy_err'], m['mean_abs_yaw_rate_err'], m['falls'], d['meets_goal']))" \
      "$onnx.s$seed.json" "$run" "$steps" "$secs" $seed 2>/dev/null || echo "$run $steps eval failed (seed $seed)"
  done
}
export -f evaluate; export PY
ls $RUNS/*/onnx/*.onnx 2>/dev/null | xargs -P 12 -I{} bash -c 'evaluate {}' | sort -k1,1 -k2,2n > "$OUT/eval.txt"
log "evaluated: $(wc -l < "$OUT/eval.txt") lines; first checkpoint of each run meeting the goal on seeds 0-2:"
awk '{k=$1" "$2; n[k]++; if ($NF=="True") ok[k]++; t[k]=$3} END {for (k in n) if (ok[k]==3) print k, t[k]}' \
  "$OUT/eval.txt" | sort -k1,1 -k2,2n | awk '!seen[$1]++' | tee -a "$OUT/log.txt"
tar czf "$OUT"/go1_runs.tar.gz -C "$RUNS" $(cd "$RUNS" && echo *.log */metrics.csv */config.yaml */train.log */onnx) 2>>"$OUT/log.txt"
log "runs archived: $(du -h "$OUT"/go1_runs.tar.gz | cut -f1)"

for env in $ROBOTS; do
  timeout 75 $PY benchmarks/robot_throughput.py --device cuda --num-envs 4096 8192 --skip-cpu --train-iters 2 \
    --env "$env" --out "$OUT/thr_$env.json" > "$OUT/thr_$env.log" 2>&1
  log "$env throughput: exit $?; $(grep -E '^ +(task|train)_mjwarp' "$OUT/thr_$env.log" | tr -s ' ' | tr '\n' ';')"
done
log "done"
