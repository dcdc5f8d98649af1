#!/bin/sh
# tests/sh/cli_errors.sh -- bad input to `ds3 logits` / `ds3 info` fails cleanly.
#
# Every case must exit with status 1 (bad input: missing, unreadable or corrupt model; token id
# out of range) or 2 (bad usage: unknown flag, missing or malformed value), never by a signal
# (status >= 128, e.g. a crash or an ASan abort), print nothing on stdout, and print exactly one
# error line on stderr that starts with "ds3 CMD: " and names the problem -- plus, for usage
# errors, the hint line "run 'ds3 CMD --help' for usage". Under ASan/UBSan (DS3_BUILD=build-asan)
# a sanitizer report adds lines and changes the status, so it fails here too.
# Runs from the repository root with DS3_BUILD set to the build folder (see tests/run.sh).
B=${DS3_BUILD:-build}
DS3="$B/ds3"
DEV=tests/fixtures/golden/dev/checkpoint
NOMTP=tests/fixtures/models/v2-f16-grouped/checkpoint
pass=0
fail=0
tmp=$(mktemp -d /tmp/ds3_cli_errors.XXXXXX) || exit 1
trap 'rm -rf "$tmp"' EXIT INT TERM

ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL $name: $*"; sed 's/^/    | /' "$tmp/err" | head -8; }

# expect NAME STATUS PATTERN CMD ARGS...
#   STATUS 1: one stderr line; STATUS 2: the error line + the usage hint. The error line must
#   start with "ds3 CMD: " and contain PATTERN (fixed string).
expect() {
    name=$1 want=$2 pat=$3
    shift 3
    cmd=$1
    "$DS3" "$@" > "$tmp/out" 2> "$tmp/err"
    rc=$?
    if [ "$rc" -ge 128 ]; then bad "killed by signal $((rc - 128))"; return; fi
    if [ "$rc" -ne "$want" ]; then bad "exit status $rc, expected $want"; return; fi
    if [ -s "$tmp/out" ]; then bad "wrote to stdout"; return; fi
    lines=$(wc -l < "$tmp/err")
    first=$(head -n 1 "$tmp/err")
    if [ "$want" -eq 2 ]; then
        if [ "$lines" -ne 2 ]; then bad "$lines stderr lines, expected error + usage hint"; return; fi
        hint=$(sed -n 2p "$tmp/err")
        if [ "$hint" != "run 'ds3 $cmd --help' for usage" ]; then bad "second line is not the usage hint"; return; fi
    elif [ "$lines" -ne 1 ]; then
        bad "$lines stderr lines, expected 1"
        return
    fi
    case "$first" in
    "ds3 $cmd: "*) ;;
    *) bad "error line does not start with 'ds3 $cmd: '"; return ;;
    esac
    case "$first" in
    *"$pat"*) ok ;;
    *) bad "error line does not name '$pat'" ;;
    esac
}

# ---- fixtures: a regular file, an empty folder, corrupt checkpoints ------------------------
: > "$tmp/file"
mkdir "$tmp/empty"
cp -r "$DEV" "$tmp/trunc"
truncate -s 5000 "$tmp/trunc/model-00002-of-00003.safetensors"
cp -r "$DEV" "$tmp/badcfg"
sed 's/"hidden_size": 128/"hidden_size": 0/' "$DEV/config.json" > "$tmp/badcfg/config.json"
cp -r "$DEV" "$tmp/badidx"
sed 's/model-00003-of-00003.safetensors/..\/x.safetensors/' "$DEV/model.safetensors.index.json" > "$tmp/badidx/model.safetensors.index.json"
cp -r "$DEV" "$tmp/noshard"
rm "$tmp/noshard/model-00001-of-00003.safetensors"
O="$tmp/out.bin"

# ---- sanity: the good paths work (so the failures below fail for their stated reason) ------
"$DS3" info -m "$DEV" > "$tmp/info.txt" 2> "$tmp/err"
rc=$?
name="info on a good model"
if [ "$rc" -eq 0 ] && grep -q "vocab_size" "$tmp/info.txt"; then ok; else bad "exit $rc"; fi
"$DS3" logits -m "$DEV" --tokens 1,2,3 -o "$O" -t 1 > /dev/null 2> "$tmp/err"
rc=$?
name="logits on a good model"
if [ "$rc" -eq 0 ] && [ "$(wc -c < "$O")" -eq $((3 * 512 * 4)) ]; then ok; else bad "exit $rc"; fi

# ---- ds3 logits --------------------------------------------------------------------------
L="--tokens 1,2 -o $O"
expect "logits: -m missing dir" 1 "$tmp/nope" logits -m "$tmp/nope" $L
expect "logits: -m regular file" 1 "$tmp/file: not a model directory" logits -m "$tmp/file" $L
expect "logits: -m empty dir" 1 "$tmp/empty/config.json" logits -m "$tmp/empty" $L
expect "logits: truncated shard" 1 "model-00002-of-00003.safetensors" logits -m "$tmp/trunc" $L
expect "logits: bad config" 1 "'hidden_size'" logits -m "$tmp/badcfg" $L
expect "logits: index path traversal" 1 "../x.safetensors" logits -m "$tmp/badidx" $L
expect "logits: shard missing" 1 "model-00001-of-00003.safetensors" logits -m "$tmp/noshard" $L
expect "logits: unknown flag" 2 "unknown option '--bogus'" logits -m "$DEV" $L --bogus
expect "logits: stray argument" 2 "unknown option 'extra'" logits -m "$DEV" $L extra
expect "logits: no -m" 2 "-m DIR is required" logits $L
expect "logits: no --tokens" 2 "--tokens is required" logits -m "$DEV" -o "$O"
expect "logits: no -o" 2 "-o OUT is required" logits -m "$DEV" --tokens 1
expect "logits: -m without value" 2 "-m needs a value" logits --tokens 1 -o "$O" -m
expect "logits: -o without value" 2 "-o needs a value" logits -m "$DEV" --tokens 1 -o
expect "logits: -t without value" 2 "-t needs a value" logits -m "$DEV" $L -t
expect "logits: -t 0" 2 "-t: 0 is out of range" logits -m "$DEV" $L -t 0
expect "logits: -t -1" 2 "-t: -1 is out of range" logits -m "$DEV" $L -t -1
expect "logits: -t abc" 2 "-t: 'abc' is not an integer" logits -m "$DEV" $L -t abc
expect "logits: -t 4x" 2 "-t: '4x' is not an integer" logits -m "$DEV" $L -t 4x
expect "logits: -t empty" 2 "-t: '' is not an integer" logits -m "$DEV" $L -t ""
expect "logits: -t 2^70" 2 "-t: '1180591620717411303424' is not an integer" logits -m "$DEV" $L -t 1180591620717411303424
expect "logits: -b 0" 2 "-b: 0 is out of range" logits -m "$DEV" $L -b 0
expect "logits: --tokens 1,x" 2 "--tokens: bad token id near 'x'" logits -m "$DEV" --tokens 1,x -o "$O"
expect "logits: --tokens -3" 2 "--tokens: bad token id near '-3'" logits -m "$DEV" --tokens -3 -o "$O"
expect "logits: --tokens 1.5" 2 "--tokens: bad token id" logits -m "$DEV" --tokens 1.5 -o "$O"
expect "logits: --tokens 2^40" 2 "--tokens: bad token id" logits -m "$DEV" --tokens 1099511627776 -o "$O"
expect "logits: --tokens empty" 2 "--tokens: no token ids" logits -m "$DEV" --tokens "" -o "$O"
expect "logits: --tokens commas" 2 "--tokens: no token ids" logits -m "$DEV" --tokens ",,," -o "$O"
expect "logits: token id = vocab" 1 "token id 512" logits -m "$DEV" --tokens 0,512 -o "$O" -t 1
expect "logits: token id 2^31-1" 1 "token id 2147483647" logits -m "$DEV" --tokens 2147483647 -o "$O" -t 1
expect "logits: --mtp-out without MTP" 1 "no MTP layer" logits -m "$NOMTP" $L --mtp-out "$tmp/mtp.bin"
expect "logits: -o unwritable" 1 "$tmp/nodir/x.bin" logits -m "$DEV" --tokens 1 -o "$tmp/nodir/x.bin" -t 1

# ---- ds3 info ----------------------------------------------------------------------------
expect "info: -m missing dir" 1 "$tmp/nope" info -m "$tmp/nope"
expect "info: -m regular file" 1 "$tmp/file: not a model directory" info -m "$tmp/file"
expect "info: -m empty dir" 1 "$tmp/empty/config.json" info -m "$tmp/empty"
expect "info: truncated shard" 1 "model-00002-of-00003.safetensors" info -m "$tmp/trunc"
expect "info: bad config" 1 "'hidden_size'" info -m "$tmp/badcfg"
expect "info: unknown flag" 2 "unknown option '--bogus'" info -m "$DEV" --bogus
expect "info: no -m" 2 "-m DIR is required" info
expect "info: -m without value" 2 "-m needs a value" info -m

# ---- the dispatcher ----------------------------------------------------------------------
"$DS3" frobnicate > "$tmp/out" 2> "$tmp/err"
rc=$?
name="unknown command"
if [ "$rc" -eq 2 ] && [ ! -s "$tmp/out" ] && [ "$(wc -l < "$tmp/err")" -eq 2 ] &&
    grep -q "^ds3: unknown command 'frobnicate'$" "$tmp/err"; then ok; else bad "exit $rc"; fi
"$DS3" > "$tmp/out" 2> "$tmp/err"
rc=$?
name="no command"
if [ "$rc" -eq 2 ] && grep -q "^usage: ds3" "$tmp/err"; then ok; else bad "exit $rc"; fi

echo "# cli_errors: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
