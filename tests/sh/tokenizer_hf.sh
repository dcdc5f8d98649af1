#!/bin/sh
# tokenizer_hf.sh -- a tokenizer trained by `ds3 tokenizer-train` loads in Hugging Face `tokenizers`
# (npm package: the Rust library) and gives ids identical to ds3 on the validation split (SPLITS.md).
#
# Corpus: tests/fixtures/tokenizer/corpus/o_almada.txt (public domain; a copy of
# /work/shared/data/corpora/machado-de-assis/o_almada.txt), or DS3_HF_CORPUS=file1:file2:...
# HF package: $DS3_HF_NODE_MODULES, else /tmp/hf-tok/node_modules, else `npm install tokenizers@0.23.2`
# into a scratch folder. Without node/npm or network the test prints a skipped note and passes.
B=${DS3_BUILD:-build}
DS3="$B/ds3"
pass=0; fail=0
ok() { pass=$((pass+1)); }
bad() { fail=$((fail+1)); echo "FAIL tokenizer_hf: $1"; }
skip() { echo "# tokenizer_hf: skipped ($1)"; echo "# tokenizer_hf: 0 passed, 0 failed"; exit 0; }

command -v node > /dev/null 2>&1 || skip "node not found"
NM=${DS3_HF_NODE_MODULES:-/tmp/hf-tok/node_modules}
if ! NODE_PATH="$NM" node -e "require('tokenizers')" > /dev/null 2>&1; then
  command -v npm > /dev/null 2>&1 || skip "npm not found"
  scratch=${TMPDIR:-/tmp}/ds3-hf-tok
  mkdir -p "$scratch" || skip "cannot create $scratch"
  (cd "$scratch" && [ -f package.json ] || npm init -y > /dev/null 2>&1)
  (cd "$scratch" && timeout 180 npm install --no-audit --no-fund tokenizers@0.23.2 > /dev/null 2>&1) ||
    skip "npm registry not reachable (npm install tokenizers failed)"
  NM="$scratch/node_modules"
  NODE_PATH="$NM" node -e "require('tokenizers')" > /dev/null 2>&1 || skip "tokenizers package does not load"
fi
export NODE_PATH="$NM"
HF="node bench/hf_tok.js"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
CORPUS=${DS3_HF_CORPUS:-tests/fixtures/tokenizer/corpus/o_almada.txt}

i=0
echo "$CORPUS" | tr ':' '\n' > "$tmp/list"
while read -r f; do
  i=$((i+1))
  $HF split "$f" train "$tmp/train$i.txt" && $HF split "$f" validation "$tmp/val$i.txt" || { bad "split $f"; continue; }
  for V in 300 1000 3000; do
    $DS3 tokenizer-train --input "$tmp/train$i.txt" --vocab-size $V -o "$tmp/tok.json" 2> /dev/null || { bad "train $f V=$V"; continue; }
    # the whole validation split as one text, without and with the BOS
    $DS3 tokenize -t "$tmp/tok.json" --no-bos --json < "$tmp/val$i.txt" > "$tmp/ds3.json"
    $HF encode "$tmp/tok.json" "$tmp/val$i.txt" > "$tmp/hf.json" 2> "$tmp/hferr" || { bad "HF cannot load/encode: $(head -c 300 "$tmp/hferr")"; continue; }
    if cmp -s "$tmp/ds3.json" "$tmp/hf.json"; then ok; else bad "$(basename "$f") V=$V: ids differ from HF on the validation split"; fi
    $DS3 tokenize -t "$tmp/tok.json" --json < "$tmp/val$i.txt" > "$tmp/ds3b.json"
    $HF encode "$tmp/tok.json" "$tmp/val$i.txt" --special > "$tmp/hfb.json"
    if cmp -s "$tmp/ds3b.json" "$tmp/hfb.json"; then ok; else bad "$(basename "$f") V=$V: ids with BOS differ from HF"; fi
    n=$(tr ',' '\n' < "$tmp/ds3.json" | wc -l)
    echo "  $(basename "$f") vocab $V: $(wc -c < "$tmp/val$i.txt") validation bytes -> $n tokens, identical to HF"
  done
done < "$tmp/list"
echo "# tokenizer_hf: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
