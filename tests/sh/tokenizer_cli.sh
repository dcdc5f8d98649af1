#!/bin/sh
# tokenizer_cli.sh -- `ds3 tokenize`, `ds3 detokenize`, `ds3 tokenizer-train`: exact CLI forms, exit codes,
# NUL bytes, --jsonl batch mode, hostile files. Prints "# tokenizer_cli: N passed, N failed".
B=${DS3_BUILD:-build}
DS3="$B/ds3"
TOK=tests/fixtures/tokenizer/tokenizer.json
pass=0; fail=0
ok() { pass=$((pass+1)); }
bad() { fail=$((fail+1)); echo "FAIL tokenizer_cli: $1"; }
check() { if [ "$2" = "$3" ]; then ok; else bad "$1: got [$2] want [$3]"; fi; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

check "ids with BOS" "$(printf 'Hello, world!' | $DS3 tokenize -t $TOK)" "0 19923 14 2058 3"
check "--no-bos" "$(printf 'Hello, world!' | $DS3 tokenize -t $TOK --no-bos)" "19923 14 2058 3"
check "--json" "$(printf 'Hello, world!' | $DS3 tokenize -t $TOK --no-bos --json)" "[19923,14,2058,3]"
check "empty input" "$(printf '' | $DS3 tokenize -t $TOK --no-bos --json)" "[]"
check "specials matched" "$(printf '<｜User｜>hi' | $DS3 tokenize -t $TOK --no-bos)" "128803 6366"
lit=$(printf '<｜User｜>hi' | $DS3 tokenize -t $TOK --no-bos --literal-specials)
case "$lit" in *128803*) bad "--literal-specials still matched";; "") bad "--literal-specials empty";; *) ok;; esac
# NUL bytes are text: a\0b
check "NUL bytes" "$(printf 'a\000b' | $DS3 tokenize -t $TOK --no-bos)" "$(printf 'a\000b' | $DS3 tokenize -t $TOK --no-bos)"
n=$(printf 'a\000b' | $DS3 tokenize -t $TOK --no-bos | wc -w)
check "NUL byte is a token" "$n" "3"
printf 'a\000b\377c' > "$tmp/in.bin"
$DS3 tokenize -t $TOK --no-bos < "$tmp/in.bin" | $DS3 detokenize -t $TOK > "$tmp/out.bin"
printf 'a\000b\357\277\275c' > "$tmp/want.bin"
if cmp -s "$tmp/out.bin" "$tmp/want.bin"; then ok; else bad "NUL + invalid byte roundtrip (U+FFFD)"; fi
# detokenize: spaces, commas, brackets
check "detokenize" "$(echo '19923, 14 2058,3' | $DS3 detokenize -t $TOK)" "Hello, world!"
check "detokenize json" "$(echo '[0,19923,14,2058,3]' | $DS3 detokenize -t $TOK --skip-special)" "Hello, world!"
echo '5 128815' | $DS3 detokenize -t $TOK > /dev/null 2> "$tmp/err"; rc=$?
check "detokenize bad id exit" "$rc" "1"
check "detokenize bad id one line" "$(wc -l < "$tmp/err")" "1"
echo '5 x7' | $DS3 detokenize -t $TOK > /dev/null 2>&1; check "detokenize junk exit" "$?" "1"
# --jsonl batch
printf '"Hello, world!"\n"<｜User｜>hi"\n"a\\u0000b"\n' | $DS3 tokenize -t $TOK --no-bos --jsonl > "$tmp/o.jsonl"
check "jsonl" "$(cat "$tmp/o.jsonl" | tr '\n' '|')" "[19923,14,2058,3]|[128803,6366]|[67,191,68]|"
check "jsonl BOS" "$(printf '"hi"\n' | $DS3 tokenize -t $TOK --jsonl)" "[0,6366]"
printf '"ok"\nnot json\n' | $DS3 tokenize -t $TOK --jsonl > /dev/null 2> "$tmp/err"; rc=$?
check "jsonl bad line exit" "$rc" "1"
grep -q "line 2" "$tmp/err" && ok || bad "jsonl error names the line"
# --chat
echo '[{"role":"user","content":"hi"}]' | $DS3 tokenize -t $TOK --chat --add-generation-prompt > "$tmp/c"
check "chat" "$(cat "$tmp/c")" "0 128803 6366 128804"
# usage errors: exit 2, one-line error + hint
$DS3 tokenize --bogus > /dev/null 2> "$tmp/err"; check "bad flag exit" "$?" "2"
grep -q "run 'ds3 tokenize --help'" "$tmp/err" && ok || bad "usage hint"
$DS3 tokenize < /dev/null > /dev/null 2>&1; check "missing -t exit" "$?" "2"
$DS3 detokenize --nope > /dev/null 2>&1; check "detokenize bad flag" "$?" "2"
$DS3 tokenizer-train --vocab-size 12 > /dev/null 2>&1; check "train bad vocab" "$?" "2"
for c in tokenize detokenize tokenizer-train; do
  $DS3 $c --help > "$tmp/h" 2>&1; check "$c --help exit" "$?" "0"
  grep -q "usage: ds3 $c" "$tmp/h" && ok || bad "$c --help text"
done
# hostile tokenizer files: exit 1, one line naming the file and field
printf '{"model": {"type": "WordPiece", "vocab": {}}}' > "$tmp/t1.json"
echo x | $DS3 tokenize -t "$tmp/t1.json" > /dev/null 2> "$tmp/err"; rc=$?
check "unknown model exit" "$rc" "1"
check "unknown model one line" "$(wc -l < "$tmp/err")" "1"
grep -q "t1.json: model.type" "$tmp/err" && ok || bad "error names file and field: $(cat "$tmp/err")"
printf '{"model": ' > "$tmp/t2.json"
echo x | $DS3 tokenize -t "$tmp/t2.json" > /dev/null 2> "$tmp/err"; check "bad json exit" "$?" "1"
grep -q "t2.json: bad JSON at line" "$tmp/err" && ok || bad "bad JSON message: $(cat "$tmp/err")"
echo x | $DS3 tokenize -t "$tmp/missing.json" > /dev/null 2>&1; check "missing file exit" "$?" "1"
# trainer: train, load, roundtrip
$DS3 tokenizer-train --input tests/fixtures/tokenizer/corpus/o_almada.txt --split train --vocab-size 600 -o "$tmp/tok.json" 2> "$tmp/err"
check "train exit" "$?" "0"
$DS3 tokenize -t "$tmp/tok.json" --no-bos < tests/fixtures/tokenizer/corpus/o_almada.txt | $DS3 detokenize -t "$tmp/tok.json" > "$tmp/rt.txt"
if cmp -s "$tmp/rt.txt" tests/fixtures/tokenizer/corpus/o_almada.txt; then ok; else bad "trained roundtrip"; fi
check "trained BOS" "$(printf 'x' | $DS3 tokenize -t "$tmp/tok.json" | cut -d' ' -f1)" "0"
echo "# tokenizer_cli: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
