#!/bin/sh
# tokenizer_bench.sh -- encode throughput (MB/s, 1 thread) of ds3 and of Hugging Face `tokenizers`
# (npm, the Rust library) measured in the same run, on the same files, with the same tokenizer.json.
#
#   sh bench/tokenizer_bench.sh [TOKENIZER.json] [FILE...]
#
# Defaults: the DeepSeek-V3 tokenizer fixture and the corpora in $DS3_CORPORA
# (default /work/shared/data/corpora/*/*.txt, falling back to the fixture corpus).
# Each file is encoded as one text, REPEATS times (default 3): "first" is the first (cold cache) pass,
# "best" the fastest. HF runs with RAYON_NUM_THREADS=1 (one text is single-threaded anyway).
# HF comes from $DS3_HF_NODE_MODULES or /tmp/hf-tok/node_modules; without it only ds3 is measured.
B=${DS3_BUILD:-build}
DS3="$B/ds3"
TOK=${1:-tests/fixtures/tokenizer/tokenizer.json}
[ $# -gt 0 ] && shift
REPEATS=${REPEATS:-3}
if [ $# -gt 0 ]; then FILES="$*"; else
  FILES=$(ls ${DS3_CORPORA:-/work/shared/data/corpora}/*/*.txt 2>/dev/null)
  [ -n "$FILES" ] || FILES=tests/fixtures/tokenizer/corpus/o_almada.txt
fi
[ -x "$DS3" ] || { echo "build $DS3 first (make)"; exit 1; }
NM=${DS3_HF_NODE_MODULES:-/tmp/hf-tok/node_modules}
HAVE_HF=0
if command -v node > /dev/null 2>&1 && NODE_PATH="$NM" node -e "require('tokenizers')" > /dev/null 2>&1; then HAVE_HF=1; fi

echo "tokenizer: $TOK   repeats: $REPEATS   (MB = 10^6 bytes, 1 thread)"
printf '%-36s %9s %9s | %10s %10s | %10s %10s | %7s\n' file bytes tokens "ds3 first" "ds3 best" "HF first" "HF best" "best x"
tmp=$(mktemp); trap 'rm -f "$tmp"' EXIT
for f in $FILES; do
  name=$(basename "$f")
  bytes=$(wc -c < "$f")
  "$DS3" tokenize -t "$TOK" --no-bos --stats --repeat 1 < "$f" 2> "$tmp" > /dev/null
  d1=$(sed -n 's/.*encode \([0-9.]*\) s.*/\1/p' "$tmp")
  ntok=$(sed -n 's/.*bytes, \([0-9]*\) tokens.*/\1/p' "$tmp")
  "$DS3" tokenize -t "$TOK" --no-bos --stats --repeat "$REPEATS" < "$f" 2> "$tmp" > /dev/null
  db=$(sed -n 's/.*encode \([0-9.]*\) s.*/\1/p' "$tmp")
  h1=-; hb=-; hf1=-; hfb=-; ratio=-
  if [ $HAVE_HF = 1 ]; then
    set -- $(RAYON_NUM_THREADS=1 NODE_PATH="$NM" node bench/hf_tok.js bench "$TOK" "$REPEATS" "$f")
    htok=$3; h1=$4; hb=$5
    [ "$htok" = "$ntok" ] || echo "  warning: HF gives $htok tokens, ds3 $ntok"
    hf1=$(awk -v b="$bytes" -v t="$h1" 'BEGIN{printf "%.2f", b/t/1e6}')
    hfb=$(awk -v b="$bytes" -v t="$hb" 'BEGIN{printf "%.2f", b/t/1e6}')
    ratio=$(awk -v a="$hb" -v b="$db" 'BEGIN{printf "%.1f", a/b}')
  fi
  ds1=$(awk -v b="$bytes" -v t="$d1" 'BEGIN{printf "%.2f", b/t/1e6}')
  dsb=$(awk -v b="$bytes" -v t="$db" 'BEGIN{printf "%.2f", b/t/1e6}')
  printf '%-36s %9s %9s | %10s %10s | %10s %10s | %7s\n' "$name" "$bytes" "$ntok" "$ds1" "$dsb" "$hf1" "$hfb" "$ratio"
done
[ $HAVE_HF = 1 ] || echo "(HF tokenizers not found: npm i tokenizers@0.23.2 in /tmp/hf-tok, or set DS3_HF_NODE_MODULES)"
