#!/usr/bin/env bash
# The GPU check, for the day a GPU is lent: does harl train, resume and evaluate on CUDA, and how fast.
#
#   bash bench/gpu_check.sh                       # on the GPU machine (DEVICE=cuda)
#   DEVICE=cpu bash bench/gpu_check.sh            # a dry run of the same steps on the CPU
#
# Steps, each under `timeout`, the whole inside BUDGET_S seconds (8 minutes; a step that would not fit is
# skipped and says so):
#   1. the device, torch and CUDA versions;
#   2. the device tests: tests/test_devices.py and tests/test_optim.py with -x, then the smoke runs of every
#      learner x architecture on the device (tests/test_smoke.py, matrix games and VMAS Dispersion);
#   3. MAPPO and HASAC through the CLI (examples/train.py --device DEVICE) for every architecture, on the
#      matrix games and on VMAS Dispersion, and with NoPS on MaMuJoCo Hopper (CPU-stepped envs: MAPPO's in 2
#      worker processes, HASAC's in-process), each for TRAIN_SECONDS (run.time_limit_minutes): env steps, SPS
#      and the final evaluation return;
#   4. bench/peer_update.py (one quick round) and bench/seeds.py (one quick round for each of SEEDS_NS seeds:
#      batched vs separate processes), on the device.
# Every step's output goes to OUT_DIR/<step>.log; one table of all of them is printed at the end. Exit status
# 0 when every step passed, 1 otherwise, 2 (one line) when the device asked for is not there.
#
# Settings (environment variables): DEVICE (cuda), BUDGET_S (480), JOBS (CLI runs and test workers at once:
# 4 on CUDA, 1 on the CPU), TRAIN_SECONDS (15), N_ENVS (vector envs of the CLI runs: 32 on CUDA, 4 on the
# CPU), TRAIN_EXTRA (more options for every CLI run), MAPPO_ARGS (e.g. "--seeds 4") and HASAC_ARGS (options
# per learner), SMOKE_ENVS (the smoke tests' -k environments: "matrix or vmas"), PEER_ARGS (bench options),
# SEEDS_NS ("1 8 64"), SEEDS_ARGS (bench options; after " -- ", options for its runs), ONLY (a regular
# expression: run only the steps whose names match it, e.g. "vmas|peer_update"), OUT_DIR (a new folder under
# /tmp), PY (.venv/bin/python when present, else python3).

set -u
cd "$(dirname "$0")/.." || exit 2

DEVICE=${DEVICE:-cuda}
BUDGET_S=${BUDGET_S:-480}
if [[ $DEVICE == cpu ]]; then default_jobs=1 default_envs=4; else default_jobs=4 default_envs=32; fi
JOBS=${JOBS:-$default_jobs}
N_ENVS=${N_ENVS:-$default_envs}
TRAIN_SECONDS=${TRAIN_SECONDS:-15}
TRAIN_EXTRA=${TRAIN_EXTRA:-}
MAPPO_ARGS=${MAPPO_ARGS:-}
HASAC_ARGS=${HASAC_ARGS:---warmup_steps 1000 --batch_size 256 --train_interval 10 --buffer_size 50000}
SMOKE_ENVS=${SMOKE_ENVS:-matrix or vmas}
PEER_ARGS=${PEER_ARGS:---threads 1 --rounds 1 --seconds 0.5}
SEEDS_NS=${SEEDS_NS:-1 8 64}
SEEDS_ARGS=${SEEDS_ARGS:---rounds 1 --iterations 2 --cores 4}
ONLY=${ONLY:-}
OUT_DIR=${OUT_DIR:-$(mktemp -d /tmp/gpu_check.XXXXXX)}
if [[ -z ${PY:-} ]]; then
    if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
fi
ARCHS=(nops fups fups_id hypermarl hypermarl_linear hypermarl_coupled dico seps kaleidoscope)
RESERVE_S=15 # kept back: a killed step's grace (timeout --kill-after) and the table
START=$EPOCHREALTIME
RESULTS=$OUT_DIR/results.tsv
mkdir -p "$OUT_DIR"
: >"$RESULTS"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

elapsed() { awk -v a="$START" -v b="$EPOCHREALTIME" 'BEGIN { printf "%d", b - a }'; }
left() { echo $((BUDGET_S - RESERVE_S - $(elapsed))); }

# row INDEX NAME RESULT SECONDS DETAIL: one line of the final table.
row() { printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" >>"$RESULTS"; }

# What a finished step's log says, by kind: pytest's closing line, a run's steps/SPS/return, a bench's result.
detail() {
    local kind=$1 log=$2 run_dir=${3:-}
    case $kind in
    pytest) grep -E '(passed|failed|error|no tests ran)' "$log" | tail -n 1 ;;
    train)
        if [[ -n $run_dir && -f $run_dir/progress.csv ]]; then
            "$PY" - "$run_dir/progress.csv" <<'EOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
last = rows[-1]
sps = next((r["charts/SPS"] for r in reversed(rows) if r.get("charts/SPS")), "")
ret = next((r["eval/episode_return"] for r in reversed(rows) if r.get("eval/episode_return")), "")
print(f"{last['env_steps']} env steps, SPS {float(sps):.0f}, eval return {float(ret):.3g}" if sps and ret else
      f"{last['env_steps']} env steps")
EOF
        else
            grep -v '^\s*$' "$log" | tail -n 1
        fi
        ;;
    peer) grep -E 'worst' "$log" | sed -E 's/^ +//' | paste -sd ';' ;;
    seeds) awk '/^[a-z_]+: env steps/ { arch = $1 } /batched \/ sequential/ { sub(/^ +/, ""); print arch, $0 }' "$log" |
        paste -sd ';' ;;
    *) grep -v '^\s*$' "$log" | tail -n 1 ;;
    esac
}

# step INDEX NAME KIND LIMIT_S CMD...: run CMD under `timeout` (LIMIT_S or the time left, the smaller), its
# output in OUT_DIR/NAME.log, and add its row. A train step's CMD gets --log_dir OUT_DIR/runs/NAME.
step() {
    local index=$1 name=$2 kind=$3 limit=$4
    shift 4
    [[ -n $ONLY && ! $name =~ $ONLY ]] && return
    local remaining
    remaining=$(left)
    if ((remaining < 10)); then
        row "$index" "$name" skipped 0 "no time left in the ${BUDGET_S} s budget"
        return
    fi
    ((limit > remaining)) && limit=$remaining
    local log=$OUT_DIR/$name.log run_root=$OUT_DIR/runs/$name
    local args=("$@")
    [[ $kind == train ]] && args+=(--log_dir "$run_root")
    local t0=$EPOCHREALTIME
    timeout --kill-after=5 "$limit" "${args[@]}" >"$log" 2>&1
    local rc=$?
    local seconds result run_dir
    seconds=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }')
    case $rc in
    0) result=ok ;;
    124 | 137) result="timeout (${limit} s)" ;;
    *) result="FAIL (exit $rc)" ;;
    esac
    run_dir=$(find "$run_root" -name progress.csv -printf '%h\n' 2>/dev/null | head -n 1)
    local said
    said=$(detail "$kind" "$log" "$run_dir")
    [[ -z $said ]] && said=$(grep -v '^\s*$' "$log" | tail -n 1) # a failure: its last words
    row "$index" "$name" "$result" "$seconds" "$(tr '\t\n' '  ' <<<"$said")"
}

# ---------------------------------------------------------------- 1. the device

info=$("$PY" - "$DEVICE" <<'EOF'
import sys
import torch
device = torch.device(sys.argv[1])
if device.type == "cuda" and not torch.cuda.is_available():
    print(f"error: DEVICE={sys.argv[1]} but CUDA is not available here (torch {torch.__version__}); use DEVICE=cpu")
    sys.exit(2)
name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
memory = f", {torch.cuda.get_device_properties(device).total_memory / 2**30:.0f} GiB" if device.type == "cuda" else ""
print(f"device {device}: {name}{memory}; torch {torch.__version__}, CUDA {torch.version.cuda}, "
      f"cuDNN {torch.backends.cudnn.version()}, {torch.cuda.device_count()} GPU(s) visible")
EOF
)
status=$?
if ((status != 0)); then
    echo "${info:-error: $PY cannot import torch}" >&2
    exit 2
fi
echo "$info"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total --format=csv,noheader
echo "logs: $OUT_DIR (budget ${BUDGET_S} s, ${JOBS} at a time)"

# ---------------------------------------------------------------- 2. the device tests

workers=()
((JOBS > 1)) && workers=(-n "$JOBS")
step 10 tests-device pytest 150 "$PY" -m pytest -q -x -p no:cacheprovider -n 0 tests/test_devices.py tests/test_optim.py
step 11 tests-smoke pytest 150 "$PY" -m pytest -q -x -p no:cacheprovider "${workers[@]}" tests/test_smoke.py \
    -k "test_tiny_run and ${DEVICE%%:*} and ($SMOKE_ENVS)"

# ---------------------------------------------------------------- 3. MAPPO and HASAC per architecture

minutes=$(awk -v s="$TRAIN_SECONDS" 'BEGIN { printf "%.4f", s / 60 }')
common=(--device "$DEVICE" --num_env_steps 100000000 --time_limit_minutes "$minutes" --n_rollout_threads "$N_ENVS"
    --eval_episodes 4 --n_eval_rollout_threads 4 --eval_interval 0 --progress_bar false --progress_interval 0)
declare -A env_args=([matrix]="--env matrix" [vmas]="--env vmas --scenario dispersion")
declare -A algo_args=([mappo]="$MAPPO_ARGS" [hasac]="$HASAC_ARGS")
index=20
for env in matrix vmas; do
    for algo in mappo hasac; do
        for arch in "${ARCHS[@]}"; do
            while (($(jobs -rp | wc -l) >= JOBS)); do wait -n; done
            arch_extra="" # a batch of seeds of seps trains with a given partition (both envs: 4 agents)
            [[ $arch == seps && " ${algo_args[$algo]} $TRAIN_EXTRA " == *" --seeds "* ]] && arch_extra="--partition 0,0,1,1"
            # shellcheck disable=SC2086 # the *_args strings are option lists
            step $index "$algo-$arch-$env" train $((TRAIN_SECONDS + 90)) "$PY" examples/train.py --algo "$algo" \
                --arch "$arch" ${env_args[$env]} "${common[@]}" ${algo_args[$algo]} $arch_extra $TRAIN_EXTRA &
            index=$((index + 1))
        done
    done
done
# CPU-stepped envs (each step's device data in one pinned, non-blocking copy): MaMuJoCo Hopper in worker
# processes (MAPPO) and in-process (HASAC)
for algo in mappo hasac; do
    while (($(jobs -rp | wc -l) >= JOBS)); do wait -n; done
    workers_arg="--n_workers 0"
    [[ $algo == mappo ]] && workers_arg="--n_workers 2"
    # shellcheck disable=SC2086
    step $index "$algo-nops-mamujoco" train $((TRAIN_SECONDS + 90)) "$PY" examples/train.py --algo "$algo" \
        --arch nops --env mamujoco --scenario Hopper --agent_conf 3x1 $workers_arg "${common[@]}" ${algo_args[$algo]} $TRAIN_EXTRA &
    index=$((index + 1))
done
wait

# ---------------------------------------------------------------- 4. the benches

# shellcheck disable=SC2086
step 90 peer_update peer 120 "$PY" bench/peer_update.py --device "$DEVICE" $PEER_ARGS
index=91
for n in $SEEDS_NS; do
    # shellcheck disable=SC2086
    step $index "seeds-$n" seeds 120 "$PY" bench/seeds.py --device "$DEVICE" --seeds "$n" $SEEDS_ARGS
    index=$((index + 1))
done

# ---------------------------------------------------------------- the table

echo
echo "GPU check on $DEVICE: $info"
echo "total $(elapsed) s of a ${BUDGET_S} s budget; logs in $OUT_DIR"
table() { if command -v column >/dev/null; then column -t -s $'\t'; else cat; fi; }
{
    printf 'step\tresult\tseconds\tdetail\n'
    sort -n -k1,1 "$RESULTS" | cut -f2-
} | table
failed=$(cut -f3 "$RESULTS" | grep -cE '^(FAIL|timeout|skipped)')
((failed == 0)) || {
    echo "$failed step(s) did not pass"
    exit 1
}
