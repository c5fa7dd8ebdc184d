#!/usr/bin/env bash
# Runs every test binary from the repository root and adds up their summary
# lines into one closing "N passed, N failed".
#
# Most suites spend their time in one thread (building models, writing files,
# waiting on the oracles' processes), so up to GRAFT_TEST_JOBS of them (the
# machine's cores by default) run at once; their outputs are printed whole and
# in the order given, each under its name and its own wall time. A suite whose
# source says "Runs alone (tests/run.sh)" asserts on wall-clock time (a Ctrl-C
# or a hang ended within seconds) and runs with nothing beside it. They start
# in this order: the ones that run alone (while nothing else has started),
# then the long ones, whose source says "Starts early (tests/run.sh)", then the
# rest in the order given, so that the run does not end on one long suite
# with the other cores idle.
set -u
build=$1
shift
export GRAFT_BIN="$build/graft" # for the tests of the command-line tool
jobs=${GRAFT_TEST_JOBS:-$(nproc 2>/dev/null || echo 1)}
case $jobs in '' | *[!0-9]* | 0) echo "tests/run.sh: GRAFT_TEST_JOBS='$jobs' is not a count" >&2; exit 2 ;; esac
# Several suites at once each keeping OpenMP threads spinning between
# parallel regions would take the cores from each other.
[ "$jobs" -gt 1 ] && export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

out_dir=$(mktemp -d "${TMPDIR:-/tmp}/graft_tests_XXXXXX") || exit 2
trap 'rm -rf "$out_dir"' EXIT

passed=0 failed=0 tests=("$@") next=0 running=0

# Whether suite $1's source carries the mark $2.
marked() {
    local src="tests/$(basename "$1").c"
    [ -f "$src" ] && grep -q "$2 (tests/run.sh)" "$src"
}

start() {
    local i=$1
    (
        t0=$(date +%s%N)
        "${tests[$i]}" >"$out_dir/$i.out" 2>&1
        rc=$?
        echo $((($(date +%s%N) - t0) / 1000000)) >"$out_dir/$i.ms"
        echo $rc >"$out_dir/$i.rc.tmp"
        mv "$out_dir/$i.rc.tmp" "$out_dir/$i.rc"
    ) &
    running=$((running + 1))
}

# Prints and counts the finished suites that are next in order.
report() {
    while [ "$next" -lt "${#tests[@]}" ] && [ -f "$out_dir/$next.rc" ]; do
        local name out rc line p f ms
        name=$(basename "${tests[$next]}")
        out=$(cat "$out_dir/$next.out")
        rc=$(cat "$out_dir/$next.rc")
        ms=$(cat "$out_dir/$next.ms")
        # the suite's own wall time, to find where the suite's minutes go
        echo "== $name ($((ms / 1000)).$(printf %03d $((ms % 1000))) s)"
        printf '%s\n' "$out" | grep -v '^[0-9]* passed, [0-9]* failed$'
        line=$(printf '%s\n' "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed$' | tail -n 1)
        next=$((next + 1))
        if [ -z "$line" ]; then
            echo "not ok - $name exited with status $rc before its summary"
            failed=$((failed + 1))
            continue
        fi
        p=${line%% passed*}
        f=${line#*passed, }
        f=${f%% failed*}
        passed=$((passed + p))
        failed=$((failed + f))
        if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
            echo "not ok - $name exited with status $rc"
            failed=$((failed + 1))
        fi
    done
}

# Waits for one running suite to end.
reap() {
    wait -n
    running=$((running - 1))
    report
}

early=() rest=()
for i in "${!tests[@]}"; do
    if marked "${tests[$i]}" "Runs alone"; then
        start "$i"
        reap
    elif marked "${tests[$i]}" "Starts early"; then
        early+=("$i")
    else
        rest+=("$i")
    fi
done
for i in "${early[@]}" "${rest[@]}"; do
    while [ "$running" -ge "$jobs" ]; do reap; done
    start "$i"
done
while [ "$running" -gt 0 ]; do reap; done
report
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
