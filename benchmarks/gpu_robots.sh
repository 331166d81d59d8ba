#!/usr/bin/env bash
# One prepared GPU session for the robot tasks on MuJoCo Warp (issue #23 item 6; docs/go1.md "On a GPU").
#
#   OUT=gpu_out bash benchmarks/gpu_robots.sh [seconds per training run]
#
# 1. Trains the Go1 (conf/env/go1_joystick.yaml: the shared recipe, randomization and mismatch included) on
#    `preset=mjwarp_gpu` with two update shapes side by side on the one GPU, each stopped by SIGINT after
#    the given seconds (default 240, process start and kernel compile included), with a checkpoint every
#    1.64M steps:
#      go1_a: 4096 envs x 20 steps, 16 minibatches of 5,120 x 5 epochs, curricula over 6M steps
#      go1_b: the preset as it is: 8192 envs x 20 steps, 32 minibatches of 5,120 x 4 epochs (MuJoCo
#             Playground's Go1 shape), curricula over 12M steps
#    The CPU recipe takes 20 minibatch steps per 10,240 samples and ramps its curricula over 1.5M steps
#    (146 iterations); at 82k-164k samples per iteration the same 1.5M steps would be 9-18 iterations.
# 2. Exports every checkpoint to ONNX (robo-ppo-export; parity checked), so the deploy loop
#    (export/deploy.py) finds the first one that meets the tracking goal and its wall time in metrics.csv.
# 3. Measures SPS at 4096 and 8192 envs for Spot, the Berkeley Humanoid and the G1
#    (benchmarks/robot_throughput.py --device cuda: the task with random actions and training end to end).
# Writes $OUT/go1_runs.tar.gz (metrics, configs, logs, ONNX files), $OUT/thr_<env>.json and $OUT/log.txt.
# Needs robo_ppo with '.[robots,mjwarp]' and a CUDA torch. From a source tree on PYTHONPATH instead of a pip
# install, first link what the wheel maps (pyproject's package-dir): `ln -s ../export robo_ppo/deploy_kit;
# ln -s ../conf robo_ppo/conf; ln -s ../policies robo_ppo/policies`; leave MUJOCO_GL unset where no EGL
# library is installed (`import mujoco` fails with MUJOCO_GL=egl there).
# EXTRA (environment variable) is appended to both training commands (a CPU smoke test: EXTRA="device=cpu
# algo.num_envs=64 algo.num_minibatches=4 checkpoint_interval=2").
set -u
OUT=${OUT:-gpu_out}
SECONDS_PER_RUN=${1:-240}
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
# shellcheck disable=SC2046
train go1_a algo.num_envs=4096 algo.num_steps=20 algo.num_minibatches=16 algo.update_epochs=5 \
  checkpoint_interval=20 $(curricula 6000000) &
train go1_b checkpoint_interval=10 &
wait

log "exporting $(ls $RUNS/*/checkpoints/*.pt 2>/dev/null | wc -l) checkpoints"
ls $RUNS/*/checkpoints/*.pt 2>/dev/null | xargs -P 8 -I{} sh -c \
  'o=$(dirname $(dirname {}))/onnx/$(basename {} .pt).onnx; mkdir -p $(dirname $o);
   '"$PY"' -m robo_ppo.export checkpoint={} output=$o > $o.log 2>&1 || echo "export failed: {}"'
tar czf "$OUT"/go1_runs.tar.gz -C "$RUNS" $(cd "$RUNS" && echo *.log */metrics.csv */config.yaml */train.log */onnx) 2>>"$OUT/log.txt"
log "runs archived: $(du -h "$OUT"/go1_runs.tar.gz | cut -f1)"

for env in $ROBOTS; do
  timeout 75 $PY benchmarks/robot_throughput.py --device cuda --num-envs 4096 8192 --skip-cpu --train-iters 2 \
    --env "$env" --out "$OUT/thr_$env.json" > "$OUT/thr_$env.log" 2>&1
  log "$env throughput: exit $?; $(grep -E '^ +(task|train)_mjwarp' "$OUT/thr_$env.log" | tr -s ' ' | tr '\n' ';')"
done
log "done"
