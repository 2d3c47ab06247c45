#!/usr/bin/env bash
# The stress loop: runs the given tests RUNS times in a row while BUSY processes keep the cores busy, and says
# how many runs failed; each failing run's output is kept. Exit status 0 only when every run passed.
#
#   tests/stress.sh [-n RUNS] [-b BUSY] [-o DIR] [-x] [PYTEST ARGS...]
#
#   -n RUNS  runs (default 30)            -b BUSY  busy processes, `python -c 'while 1: pass'` (default 2)
#   -o DIR   where failing runs' output and tmp_path directories go (default: a new temporary directory)
#   -x       stop at the first failing run
#   PYTEST ARGS default to the Slack end-to-end, Socket Mode, trust and concurrency tests (see docs/testing.md).
#
# The busy processes are this script's own children and are killed when it exits, however it exits.
set -u
cd "$(dirname "$0")/.."
runs=30 busy=2 out="" stop_first=0
while getopts "n:b:o:x" opt; do
    case $opt in
        n) runs=$OPTARG ;; b) busy=$OPTARG ;; o) out=$OPTARG ;; x) stop_first=1 ;;
        *) sed -n '2,12p' "$0" >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
if [ $# -eq 0 ]; then
    set -- tests/test_slack_e2e.py tests/test_socket_mode_e2e.py tests/test_trust.py tests/test_trust_faults.py \
        tests/test_report_e2e.py
fi
python=${PYTHON:-.venv/bin/python}
[ -x "$python" ] || python=python3
out=${out:-$(mktemp -d "${TMPDIR:-/tmp}/stress.XXXXXX")}
mkdir -p "$out"

# killed by a signal, the script stops after the current run (so pytest tears its `serve` processes down);
# Ctrl-C reaches pytest at once
pids=()
stop_busy() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done; pids=(); }
trap stop_busy EXIT
trap 'exit 130' INT TERM
for _ in $(seq 1 "$busy"); do
    "$python" -c 'while 1: pass' &
    pids+=($!)
done

failed=0
started=$(date +%s)
for run in $(seq 1 "$runs"); do
    log="$out/run-$run.log" tmp="$out/run-$run.tmp"  # the run's tmp_path directories (serve's logs)
    if "$python" -m pytest -q -p no:cacheprovider --basetemp="$tmp" "$@" >"$log" 2>&1; then
        echo "run $run/$runs: passed ($(tail -n 1 "$log"))"
        rm -rf "$log" "$tmp"
    else
        failed=$((failed + 1))
        echo "run $run/$runs: FAILED, output in $log, its tmp_path directories in $tmp"
        grep -E '^(FAILED|ERROR) ' "$log" | sed 's/^/    /'
        [ "$stop_first" = 1 ] && break
    fi
done
echo "$run runs, $failed failed, $(( $(date +%s) - started )) s, busy processes: $busy, tests: $*"
[ "$failed" -eq 0 ]
