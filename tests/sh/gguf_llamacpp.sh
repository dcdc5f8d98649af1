#!/bin/sh
# tests/sh/gguf_llamacpp.sh -- ds3 against llama.cpp itself (node-llama-cpp 3.21.1's prebuilt CPU
# library, llama.cpp v0.4.0) on GGUF files, through bench/llamacpp_logits.js:
#   1. files written by llama.cpp's gguf-py (tests/fixtures/gguf/dev-{f32,q8_0}.gguf): ds3's
#      log-probabilities at every position vs llama.cpp's, live;
#   2. files written by `ds3 convert` from a safetensors checkpoint (f32, q8_0): they load in
#      llama.cpp, and llama.cpp's log-probabilities agree with ds3's on the source checkpoint.
# Tolerances (max |dlogprob| over log-probabilities above -30, median over positions / worst):
#   F32 1e-3 at every position; Q8_0 median position <= 0.15 and argmax agreement >= 85% (both
#   sides round activations to 8 bits differently; a near-tie routing flip moves a position by ~1).
# Skips (counted as passed, with a note) when node/npm or the package cannot be installed.
B=${DS3_BUILD:-build}
NM=${NLC_MODULES:-bench/out/llamacpp/npm/node_modules}
pass=0; fail=0
ok() { pass=$((pass+1)); }
bad() { fail=$((fail+1)); echo "FAIL gguf_llamacpp: $*"; }
report() { echo "# gguf_llamacpp: $pass passed, $fail failed"; [ "$fail" -eq 0 ]; exit $?; }
if [ ! -f "$NM/node-llama-cpp/dist/index.js" ]; then
    if command -v npm >/dev/null 2>&1; then
        mkdir -p bench/out/llamacpp/npm
        (cd bench/out/llamacpp/npm && { [ -f package.json ] || echo '{"name":"ds3-llamacpp","private":true}' > package.json; } &&
            timeout 300 npm install --no-audit --no-fund --ignore-scripts node-llama-cpp@3.21.1 > install.log 2>&1) || true
    fi
fi
if ! command -v node >/dev/null 2>&1 || [ ! -f "$NM/node-llama-cpp/dist/index.js" ]; then
    echo "note: node-llama-cpp@3.21.1 not available (no node/npm or no registry): llama.cpp checks skipped"; ok; report
fi
T=$(mktemp -d)
TOK=$(tr -d '[] \n' < tests/fixtures/gguf/tokens48.json)
# compare FILE_A FILE_B (float32 [n, V]; A = ds3 logits, B = llama.cpp logprobs) V TOL
cmp_lp() {
    node -e '
const fs = require("fs");
const a = new Float32Array(fs.readFileSync(process.argv[1]).buffer.slice(0)), b = new Float32Array(fs.readFileSync(process.argv[2]).buffer.slice(0));
const V = +process.argv[3], tol = +process.argv[4], n = a.length / V;
if (b.length !== a.length) { console.log("size mismatch", a.length, b.length); process.exit(1); }
let worst = 0, agree = 0; const per = [];
for (let i = 0; i < n; i++) {
  let mx = -Infinity, am = 0, bm = 0;
  for (let v = 0; v < V; v++) { if (a[i*V+v] > mx) { mx = a[i*V+v]; am = v; } if (!(b[i*V+bm] >= b[i*V+v])) bm = v; }
  let s = 0; for (let v = 0; v < V; v++) s += Math.exp(a[i*V+v] - mx);
  const lse = mx + Math.log(s); let d = 0;
  for (let v = 0; v < V; v++) { const r = b[i*V+v]; if (r === r && r > -30) d = Math.max(d, Math.abs(a[i*V+v] - lse - r)); }
  per.push(d); worst = Math.max(worst, d); agree += am === bm;
}
per.sort((x, y) => x - y); const med = per[n >> 1];
const okv = tol < 0.01 ? worst <= tol && agree === n : med <= tol && agree >= 0.85 * n;
console.log(`median ${med.toExponential(2)} worst ${worst.toExponential(2)} argmax ${agree}/${n}`);
process.exit(okv ? 0 : 1);' "$1" "$2" "$3" "$4"
}
for f in f32 q8_0; do
    G=tests/fixtures/gguf/dev-$f.gguf
    tol=1e-3; [ "$f" = q8_0 ] && tol=0.15
    if node bench/llamacpp_logits.js "$NM" "$G" "$TOK" "$T/l-$f.f32" 1000 2> "$T/err"; then
        "$B/ds3" logits -m "$G" --tokens "$TOK" -o "$T/d-$f.f32" -t 2 2>/dev/null &&
            r=$(cmp_lp "$T/d-$f.f32" "$T/l-$f.f32" 1000 $tol) && { ok; echo "llama.cpp-written $f: $r"; } || bad "dev-$f.gguf: $r"
    else
        bad "llama.cpp could not evaluate $G: $(tail -1 "$T/err")"
    fi
done
# ds3 convert -> llama.cpp: a model with a vocab large enough for a byte-level tokenizer
# (the golden dev checkpoint, vocab 512, plus a byte-level BPE trained by ds3 to that size)
SRC=$T/src
mkdir -p "$SRC" && cp tests/fixtures/golden/dev/checkpoint/* "$SRC"/
"$B/ds3" tokenizer-train --input tests/fixtures/tokenizer/tokenizer_config.json --vocab-size 512 --min-frequency 1 \
    -o "$SRC/tokenizer.json" > /dev/null 2>&1 || bad "tokenizer-train"
V=$(node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1]+"/config.json")).vocab_size)' "$SRC")
TOKS=$(node -e 'const V=+process.argv[1];const a=[];for(let i=0;i<16;i++)a.push((i*37+5)%V);console.log(a.join(","))' "$V")
"$B/ds3" logits -m "$SRC" --tokens "$TOKS" -o "$T/src.f32" -t 2 2>/dev/null || bad "ds3 logits on $SRC"
for ty in f32 q8_0; do
    tol=1e-3; [ "$ty" = q8_0 ] && tol=0.15
    "$B/ds3" convert -m "$SRC" -o "$T/c-$ty.gguf" --type $ty 2>/dev/null || { bad "convert $ty"; continue; }
    if node bench/llamacpp_logits.js "$NM" "$T/c-$ty.gguf" "$TOKS" "$T/lc-$ty.f32" "$V" 2> "$T/err"; then
        r=$(cmp_lp "$T/src.f32" "$T/lc-$ty.f32" "$V" $tol) && { ok; echo "ds3-written $ty in llama.cpp vs ds3 on the checkpoint: $r"; } ||
            bad "ds3 convert $ty: $r"
    else
        bad "llama.cpp could not load the ds3-written $ty file: $(tail -2 "$T/err")"
    fi
done
rm -rf "$T"
report
