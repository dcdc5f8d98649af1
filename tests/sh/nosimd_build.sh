#!/bin/sh
# nosimd_build.sh -- the build without the SIMD kernel files (NO_SIMD=1: what a non-x86 machine
# and the fuzz build compile) links, and its scalar engine passes the kernel and golden tests.
# Every x86 symbol the portable code calls must exist there too (session 7 found two missing).
# Builds into build-nosimd/ (incremental after the first run). Owned by the kernels engineer.
O=build-nosimd
pass=0; fail=0
ok() { pass=$((pass+1)); }
bad() { fail=$((fail+1)); echo "FAIL nosimd_build: $*"; }
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if make -s O=$O NO_SIMD=1 -j2 all > "$log" 2>&1; then ok; else bad "make O=$O NO_SIMD=1 all failed"; tail -20 "$log"; fi
for t in test_kernels test_golden; do
    if [ -x "$O/tests/$t" ] && "$O/tests/$t" > "$log" 2>&1; then ok; else bad "$t (scalar only) failed"; grep -E '^FAIL' "$log" | head -5; fi
done
"$O/ds3" info -m tests/fixtures/golden/fp8-dev/checkpoint 2>/dev/null | grep -q "kernels:.*ref" && ok || bad "ds3 info does not report the ref kernels"
echo "# nosimd_build: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
