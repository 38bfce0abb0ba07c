#!/usr/bin/env bash
# Run many medfm params files: one process per visible GPU (or one at a time on the CPU),
# skipping finished runs (results/<model_name>/metrics_results.json and, for a run that
# trained here, run_info.json, the last file a run writes) and resuming interrupted ones from
# their last checkpoint (training_params.restore_session=true).
#
# Usage: scripts/sweep/sweep.sh [options] CONFIG... [-- MEDFM_ARGS...]
#   CONFIG            params files, globs (quoted or not), or @FILE (one path or glob a line)
#   --save_dir DIR    where every run writes (default: results); overrides the files' save_dir
#   --gpus LIST       comma-separated GPU ids to use (default: $CUDA_VISIBLE_DEVICES, else every
#                     GPU `nvidia-smi -L` lists, else the CPU)
#   --cpu             run on the CPU, one run at a time
#   --medfm BIN       the medfm binary (default: target/release/medfm of this checkout, else
#                     `medfm` on PATH)
#   --folds K         K-fold cross-validation: each config becomes K runs (<model_name>_fold<i>)
#   --dry-run         print what would run, run nothing
#   -- MEDFM_ARGS     passed to every run, e.g. -- --data_location /data --set training_params.epochs=3
#
# Per run: log in DIR/sweep/logs/<model_name>.log (appended across attempts), state in
# DIR/sweep/status/<model_name>; all planned runs in DIR/sweep/plan.tsv. Afterwards
# `medfm report --save_dir DIR` tabulates them. Exit status: 0 when no run failed.
# Needs bash >= 4.4.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=sweep_common.sh
source "$here/scripts/sweep/sweep_common.sh"

save_dir="results"
gpu_list=""
force_cpu=0
medfm=""
dry_run=0
folds=""
patterns=()
extra=()

while [[ $# -gt 0 ]]; do
    case "$1" in
        --save_dir) [[ $# -ge 2 ]] || sweep_die "--save_dir needs a value"; save_dir="$2"; shift 2 ;;
        --gpus) [[ $# -ge 2 ]] || sweep_die "--gpus needs a value"; gpu_list="$2"; shift 2 ;;
        --cpu) force_cpu=1; shift ;;
        --medfm) [[ $# -ge 2 ]] || sweep_die "--medfm needs a value"; medfm="$2"; shift 2 ;;
        --dry-run) dry_run=1; shift ;;
        --folds) [[ $# -ge 2 ]] || sweep_die "--folds needs a value"; folds="$2"; shift 2 ;;
        -h|--help) sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        --) shift; extra=("$@"); break ;;
        -*) sweep_die "unknown option $1 (medfm options go after --)" ;;
        *) patterns+=("$1"); shift ;;
    esac
done

sweep_check_extra "${extra[@]+"${extra[@]}"}"
sweep_expand "${patterns[@]+"${patterns[@]}"}"
sweep_find_medfm "$here"
sweep_prepare_dirs
[[ -n "$folds" ]] && sweep_fold_configs "$folds"

# Slots: one per GPU, or a single CPU slot.
slots=()
if [[ $force_cpu -eq 0 ]]; then
    if [[ -n "$gpu_list" ]]; then
        IFS=',' read -r -a slots <<< "$gpu_list"
    elif [[ -n "${CUDA_VISIBLE_DEVICES:-}" && "${CUDA_VISIBLE_DEVICES}" != "-1" ]]; then
        IFS=',' read -r -a slots <<< "$CUDA_VISIBLE_DEVICES"
    elif command -v nvidia-smi >/dev/null 2>&1; then
        n=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true)
        for ((i = 0; i < n; i++)); do slots+=("$i"); done
    fi
fi
[[ ${#slots[@]} -gt 0 ]] || slots=("cpu")

sweep_plan "${configs[@]}"
jobs_cfg=(); jobs_name=(); jobs_mode=(); skipped=(); invalid=()
for ((i = 0; i < ${#plan_cfg[@]}; i++)); do
    case "${plan_state[$i]}" in
        done) skipped+=("${plan_name[$i]}") ;;
        invalid) invalid+=("${plan_cfg[$i]}: ${plan_why[$i]}") ;;
        *) jobs_cfg+=("${plan_cfg[$i]}"); jobs_name+=("${plan_name[$i]}"); jobs_mode+=("${plan_state[$i]}") ;;
    esac
done

echo "sweep: ${#configs[@]} configs, ${#jobs_cfg[@]} to run, ${#skipped[@]} already done," \
     "${#invalid[@]} invalid; slots: ${slots[*]}; save_dir: $save_dir"

if [[ $dry_run -eq 1 ]]; then
    for ((i = 0; i < ${#jobs_cfg[@]}; i++)); do
        echo "would ${jobs_mode[$i]}: ${jobs_name[$i]} (${jobs_cfg[$i]})"
    done
    # The reasons too: a plan that only counts its invalid configs cannot be acted on.
    for f in "${invalid[@]+"${invalid[@]}"}"; do echo "invalid: $f"; done
    exit 0
fi

# Scheduler: keep every slot busy; poll for finished runs. Job control gives each run its own
# process group, so an interrupted sweep stops a run together with its medfm process.
set -m
declare -A pid_slot=()
declare -A pid_name=()
free=("${slots[@]}")
cleanup() {
    for pid in "${!pid_slot[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    echo "sweep: interrupted; rerun the same command to resume" >&2
    exit 130
}
trap cleanup INT TERM

reap() {
    local pid
    for pid in "${!pid_slot[@]}"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            wait "$pid" 2>/dev/null || true
            free+=("${pid_slot[$pid]}")
            echo "sweep: finished ${pid_name[$pid]}: $(cat "$status_dir/${pid_name[$pid]}" 2>/dev/null)"
            unset "pid_slot[$pid]" "pid_name[$pid]"
        fi
    done
}

for ((i = 0; i < ${#jobs_cfg[@]}; i++)); do
    while [[ ${#free[@]} -eq 0 ]]; do sleep 1; reap; done
    slot="${free[0]}"; free=("${free[@]:1}")
    echo "sweep: ${jobs_mode[$i]} ${jobs_name[$i]} on $slot (log: $logs/${jobs_name[$i]}.log)"
    sweep_run_one "${jobs_cfg[$i]}" "${jobs_name[$i]}" "${jobs_mode[$i]}" "$slot" &
    pid_slot[$!]="$slot"; pid_name[$!]="${jobs_name[$i]}"
done
while [[ ${#pid_slot[@]} -gt 0 ]]; do sleep 1; reap; done

done_runs=(); failed_runs=()
for name in "${jobs_name[@]+"${jobs_name[@]}"}"; do
    st="$(cat "$status_dir/$name" 2>/dev/null || echo "failed ?")"
    if [[ "$st" == "done" ]]; then
        done_runs+=("$name")
    else
        failed_runs+=("$name ($st; log: $logs/$name.log)")
    fi
done
echo
echo "sweep summary: ${#done_runs[@]} done, $(( ${#failed_runs[@]} + ${#invalid[@]} )) failed," \
     "${#skipped[@]} skipped (already done)"
for f in "${failed_runs[@]+"${failed_runs[@]}"}"; do echo "  failed: $f"; done
for f in "${invalid[@]+"${invalid[@]}"}"; do echo "  invalid: $f"; done
echo "table: $medfm report --save_dir $save_dir"
[[ ${#failed_runs[@]} -eq 0 && ${#invalid[@]} -eq 0 ]]
