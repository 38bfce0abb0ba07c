# Shared by scripts/sweep/sweep.sh and scripts/sweep/slurm/*: finding the binary and the params files,
# asking medfm for each run's state, and running one run with its log and status file.
# Source it; it defines functions and uses these globals:
#   medfm (binary), save_dir (absolute), extra (array of medfm args for every run),
#   logs, status_dir (set by sweep_prepare_dirs).
# shellcheck shell=bash disable=SC2154

sweep_die() { echo "sweep: $*" >&2; exit 2; }

# Reject medfm options that must differ per run or that the sweep sets itself.
sweep_check_extra() {
    local a
    for a in "$@"; do
        case "$a" in
            --model_name*|--save_dir*|--params_path*|--test|--fold*)
                sweep_die "$a cannot be given to every run of a sweep (use the sweep's own options)" ;;
            # The same through --set: every run (every fold) would get one name or one fold.
            training_params.model_name=*|--set=training_params.model_name=*|\
            dataset_params.fold=*|--set=dataset_params.fold=*)
                sweep_die "--set ${a#--set=} cannot be given to every run of a sweep (each run is named by its params file; folds: --folds)" ;;
        esac
    done
}

# sweep_expand PATTERN...: params files, globs (quoted or not) and @FILE lists -> configs=().
sweep_expand() {
    configs=()
    local p line
    for p in "$@"; do
        if [[ "$p" == @* ]]; then
            [[ -f "${p#@}" ]] || sweep_die "list file ${p#@} not found"
            while IFS= read -r line || [[ -n "$line" ]]; do
                line="${line%%#*}"
                line="$(echo "$line" | xargs)"
                [[ -n "$line" ]] && _sweep_add "$line"
            done < "${p#@}"
        else
            _sweep_add "$p"
        fi
    done
    [[ ${#configs[@]} -gt 0 ]] || sweep_die "no params files given (see --help)"
}

_sweep_add() {
    local p="$1" m found=0
    if [[ -f "$p" ]]; then configs+=("$p"); return; fi
    shopt -s nullglob
    # Word splitting is wanted here: $p is a glob pattern.
    # shellcheck disable=SC2206
    local matches=($p)
    shopt -u nullglob
    for m in "${matches[@]+"${matches[@]}"}"; do
        [[ -f "$m" ]] && { configs+=("$m"); found=1; }
    done
    [[ $found -eq 1 ]] || sweep_die "no params file matches $p"
}

# sweep_find_medfm REPO: set medfm unless given (REPO/target/release/medfm, else PATH).
sweep_find_medfm() {
    [[ -n "${medfm:-}" ]] && return
    if [[ -x "$1/target/release/medfm" ]]; then
        medfm="$1/target/release/medfm"
    elif command -v medfm >/dev/null 2>&1; then
        medfm="$(command -v medfm)"
    else
        sweep_die "no medfm binary: build it (cargo build --release) or pass --medfm"
    fi
}

# Make save_dir absolute and create the sweep folders.
sweep_prepare_dirs() {
    mkdir -p "$save_dir"
    save_dir="$(cd "$save_dir" && pwd)"
    logs="$save_dir/sweep/logs"
    status_dir="$save_dir/sweep/status"
    mkdir -p "$logs" "$status_dir"
}

# sweep_fold_configs K: replace configs=() by K params files per config, one per fold of
# K-fold cross-validation: dataset_params.folds = K, dataset_params.fold = i and the run name
# <model_name>_fold<i> (what `medfm --fold i` does), written to save_dir/sweep/folds/ (after
# sweep_prepare_dirs). `medfm report` then shows each config's folds as mean ± sd.
sweep_fold_configs() {
    local k="$1" out="$save_dir/sweep/folds" cfg derived=()
    [[ "$k" =~ ^[0-9]+$ && "$k" -ge 2 ]] || sweep_die "--folds needs a number >= 2, got $k"
    command -v python3 >/dev/null 2>&1 || sweep_die "--folds needs python3 (to write the per-fold params files)"
    mkdir -p "$out"
    for cfg in "${configs[@]}"; do
        while IFS= read -r line; do derived+=("$line"); done < <(python3 - "$cfg" "$k" "$out" <<'PY' || sweep_die "cannot write the fold params files of $cfg"
import json, os, sys
cfg, k, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with open(cfg, encoding="utf-8-sig") as f:
    p = json.load(f)
# Named by the run (params files of several datasets often share a file name).
name = p["training_params"]["model_name"]
for i in range(k):
    p["dataset_params"]["folds"] = k
    p["dataset_params"]["fold"] = i
    p["training_params"]["model_name"] = f"{name}_fold{i}"
    path = os.path.join(out, f"{name}_fold{i}.json")
    with open(path + ".tmp", "w") as f:
        json.dump(p, f, indent=4)
        f.write("\n")
    os.replace(path + ".tmp", path)
    print(path)
PY
)
    done
    configs=("${derived[@]}")
}

# sweep_plan CONFIG...: record the plan and fill plan_cfg/plan_name/plan_state
# (done | resume | start | invalid; plan_why holds the reason for invalid ones).
sweep_plan() {
    local sets=() i out tag state name cfg why
    for ((i = 0; i < ${#extra[@]}; i++)); do
        case "${extra[$i]}" in
            --set) sets+=(--set "${extra[$((i + 1))]:-}") ;;
            --set=*) sets+=(--set "${extra[$i]#--set=}") ;;
        esac
    done
    out="$("$medfm" report --save_dir "$save_dir" --plan "${sets[@]+"${sets[@]}"}" --configs "$@")" \
        || sweep_die "could not read the params files (medfm report --plan failed)"
    plan_cfg=(); plan_name=(); plan_state=(); plan_why=()
    while IFS=$'\t' read -r tag state name cfg why; do
        [[ "$tag" == "plan" ]] || continue
        plan_cfg+=("$cfg"); plan_name+=("$name"); plan_state+=("$state"); plan_why+=("${why:-}")
    done <<< "$out"
}

sweep_write_status() { # NAME TEXT
    local f="$status_dir/$1"
    printf '%s\n' "$2" > "$f.tmp.$$" && mv -f "$f.tmp.$$" "$f"
}

# sweep_run_one CONFIG NAME MODE SLOT: run medfm (MODE resume adds restore_session=true) on
# SLOT (a GPU id, or "cpu"), appending to the run's log and keeping its status file current.
# Returns medfm's exit code (1 if it exited 0 without writing metrics_results.json).
sweep_run_one() {
    local cfg="$1" name="$2" mode="$3" slot="$4" rc=0
    local cmd=("$medfm" --params_path "$cfg" --save_dir "$save_dir")
    [[ "$mode" == "resume" ]] && cmd+=(--set training_params.restore_session=true)
    [[ "$slot" != "cpu" ]] && cmd+=(--gpu 0)
    cmd+=("${extra[@]+"${extra[@]}"}")
    sweep_write_status "$name" "running"
    {
        echo "=== $(date '+%F %T') $mode on $slot (host $(hostname)): ${cmd[*]}"
        if [[ "$slot" == "cpu" ]]; then
            CUDA_VISIBLE_DEVICES="" "${cmd[@]}" || rc=$?
        else
            CUDA_VISIBLE_DEVICES="$slot" "${cmd[@]}" || rc=$?
        fi
        echo "=== $(date '+%F %T') exit code $rc"
    } >> "$logs/$name.log" 2>&1
    if [[ $rc -eq 0 && -f "$save_dir/results/$name/metrics_results.json" ]]; then
        sweep_write_status "$name" "done"
        return 0
    fi
    [[ $rc -eq 0 ]] && rc=1
    if [[ $rc -gt 128 ]]; then
        sweep_write_status "$name" "failed $rc (killed by signal $((rc - 128)))"
    else
        sweep_write_status "$name" "failed $rc"
    fi
    return "$rc"
}
