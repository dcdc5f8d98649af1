#!/bin/sh
# tests/run.sh -- run every test binary in $DS3_BUILD/tests and every tests/sh/*.sh script,
# add up their "# name: N passed, N failed" lines, and end with the total line.
# Exit status is non-zero when any check failed or any test crashed.
B=${DS3_BUILD:-build}
total_p=0; total_f=0; crashed=0
log=$(mktemp)
for t in "$B"/tests/test_* tests/sh/*.sh; do
    [ -e "$t" ] || continue
    case "$t" in *.sh) cmd="sh $t";; *) cmd="$t";; esac
    DS3_BUILD="$B" $cmd > "$log" 2>&1
    rc=$?
    line=$(grep -E '^# .*: [0-9]+ passed, [0-9]+ failed' "$log" | tail -1)
    if [ -z "$line" ]; then
        echo "CRASH $t (exit $rc, no report)"; tail -20 "$log"; crashed=$((crashed+1)); total_f=$((total_f+1))
        continue
    fi
    p=$(echo "$line" | sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed.*/\1/')
    f=$(echo "$line" | sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed.*/\2/')
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; echo "FAIL $t exited $rc"; fi
    if [ "$f" -ne 0 ]; then grep -E '^FAIL' "$log" | head -30; fi
    echo "$line"
    total_p=$((total_p+p)); total_f=$((total_f+f))
done
rm -f "$log"
echo "$total_p passed, $total_f failed"
[ "$total_f" -eq 0 ]
