#!/usr/bin/env bash
# Submit params files to Slurm as one job array: one task per run not yet done, each task
# one GPU. Tasks are requeued after preemption (--requeue) and a requeued task resumes from
# its last checkpoint (training_params.restore_session=true). Rerunning the same command
# later submits only what is still missing or failed.
#
# Usage: scripts/sweep/slurm/submit.sh [options] CONFIG... [-- MEDFM_ARGS...]
#   CONFIG              params files, globs (quoted or not), or @FILE (one path or glob a line)
#   --save_dir DIR      where every run writes (default: results); must be on a shared
#                       filesystem visible from the compute nodes
#   --max-parallel N    at most N tasks at once (sbatch --array=...%N)
#   --sbatch "ARGS"     extra sbatch options, e.g. "--partition=gpu --account=abc --time=48:00:00"
#                       (sbatch's SBATCH_* environment variables work too)
#   --medfm BIN         the medfm binary (default: target/release/medfm of this checkout)
#   --folds K           K-fold cross-validation: each config becomes K runs (<model_name>_fold<i>)
#   --dry-run           print the sbatch command, submit nothing
#   -- MEDFM_ARGS       passed to every run, e.g. -- --data_location /data
#
# Files: DIR/sweep/slurm/<time>.runs (the array's runs), DIR/sweep/slurm/<job>_<task>.out (Slurm
# output), DIR/sweep/logs/<model_name>.log and DIR/sweep/status/<model_name> as for sweep.sh.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
# shellcheck source=../sweep_common.sh
source "$here/scripts/sweep/sweep_common.sh"

save_dir="results"
max_parallel=""
sbatch_args=""
medfm=""
dry_run=0
folds=""
patterns=()
extra=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --save_dir) [[ $# -ge 2 ]] || sweep_die "--save_dir needs a value"; save_dir="$2"; shift 2 ;;
        --max-parallel) [[ $# -ge 2 ]] || sweep_die "--max-parallel needs a value"; max_parallel="$2"; shift 2 ;;
        --sbatch) [[ $# -ge 2 ]] || sweep_die "--sbatch needs a value"; sbatch_args="$2"; shift 2 ;;
        --medfm) [[ $# -ge 2 ]] || sweep_die "--medfm needs a value"; medfm="$2"; shift 2 ;;
        --dry-run) dry_run=1; shift ;;
        --folds) [[ $# -ge 2 ]] || sweep_die "--folds needs a value"; folds="$2"; shift 2 ;;
        -h|--help) sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        --) shift; extra=("$@"); break ;;
        -*) sweep_die "unknown option $1 (medfm options go after --)" ;;
        *) patterns+=("$1"); shift ;;
    esac
done
[[ -z "$max_parallel" || "$max_parallel" =~ ^[1-9][0-9]*$ ]] || sweep_die "--max-parallel must be a positive integer"

sweep_check_extra "${extra[@]+"${extra[@]}"}"
sweep_expand "${patterns[@]+"${patterns[@]}"}"
sweep_find_medfm "$here"
medfm="$(cd "$(dirname "$medfm")" && pwd)/$(basename "$medfm")"
sweep_prepare_dirs
[[ -n "$folds" ]] && sweep_fold_configs "$folds"
sweep_plan "${configs[@]}"

mkdir -p "$save_dir/sweep/slurm"
runs_file="$save_dir/sweep/slurm/$(date +%Y%m%d-%H%M%S).runs"
n=0; skipped=0; invalid=0
: > "$runs_file"
for ((i = 0; i < ${#plan_cfg[@]}; i++)); do
    case "${plan_state[$i]}" in
        done) skipped=$((skipped + 1)) ;;
        invalid) invalid=$((invalid + 1)); echo "invalid: ${plan_cfg[$i]}: ${plan_why[$i]}" >&2 ;;
        *)
            # Absolute paths: tasks run on other nodes, from another directory.
            cfg="$(cd "$(dirname "${plan_cfg[$i]}")" && pwd)/$(basename "${plan_cfg[$i]}")"
            printf '%s\t%s\n' "$cfg" "${plan_name[$i]}" >> "$runs_file"
            n=$((n + 1)) ;;
    esac
done
echo "slurm: ${#configs[@]} configs: $n to submit, $skipped already done, $invalid invalid"
if [[ $n -eq 0 ]]; then
    rm -f "$runs_file"
    echo "slurm: nothing to submit"
    exit 0
fi

array="0-$((n - 1))${max_parallel:+%$max_parallel}"
# Word splitting of --sbatch "ARGS" is intended.
# shellcheck disable=SC2206
cmd=(sbatch --array="$array" --requeue --job-name=medfm-sweep
     --output="$save_dir/sweep/slurm/%A_%a.out" --open-mode=append $sbatch_args
     "$here/scripts/sweep/slurm/array_task.sbatch" "$here" "$runs_file" "$save_dir" "$medfm"
     -- "${extra[@]+"${extra[@]}"}")
if [[ $dry_run -eq 1 ]]; then
    printf '%q ' "${cmd[@]}"; echo
    exit 0
fi
"${cmd[@]}"
echo "slurm: runs listed in $runs_file; when the array is done: $medfm report --save_dir $save_dir"
