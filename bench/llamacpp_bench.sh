#!/bin/sh
# bench/llamacpp_bench.sh -- `make bench-llamacpp`: ds3 against llama.cpp on the same GGUF files.
#
#  1. npm-installs node-llama-cpp@3.21.1 into bench/out/llamacpp/npm (once) and builds llama.cpp's
#     own llama-bench from the source that package ships (llama/gitRelease.bundle = the exact code
#     of its prebuilt binaries): CPU only, Release, GGML_NATIVE (about 17 minutes on 2 cores; the
#     build is cached in bench/out/llamacpp/build).
#  2. writes the DeepSeek-V3-shaped benchmark model (~1.2B total / 0.2B active; `ds3 bench --synth`)
#     and converts it with `ds3 convert` to GGUF in Q8_0 and Q4_K.
#  3. measures both engines on each file at $THREADS threads (default 2), weights loaded into RAM
#     on both sides (llama-bench --mmap 0, ds3 --no-mmap): prompt processing of 512 tokens and
#     generation of 128 tokens (both from an empty cache, llama-bench's convention), alternating the
#     two sides twice, and prints the best tok/s of each side and the ratios ds3 / llama.cpp.
#
# Environment: THREADS=N, QUICK=1 (pp128/tg32, 1 rep), LLAMACPP_BUILD_ONLY=1 (stop after step 1),
# LLAMA_BENCH=/path/to/llama-bench (skip step 1), TYPES="q8_0 q4_k".
set -e
B=${DS3_BUILD:-build}
OUT=bench/out
LC=$OUT/llamacpp
T=${THREADS:-2}
TYPES=${TYPES:-"q8_0 q4_k"}
NP=512; NG=128; REPS=3
[ -n "$QUICK" ] && { NP=128; NG=32; REPS=1; }
mkdir -p "$LC"

build_llama_bench() {
    if [ -x "$LC/build/bin/llama-bench" ]; then return 0; fi
    command -v npm >/dev/null 2>&1 || { echo "llamacpp_bench: npm not found; cannot fetch node-llama-cpp"; return 1; }
    command -v cmake >/dev/null 2>&1 || { echo "llamacpp_bench: cmake not found"; return 1; }
    if [ ! -f "$LC/npm/node_modules/node-llama-cpp/llama/gitRelease.bundle" ]; then
        echo "llamacpp_bench: npm install node-llama-cpp@3.21.1 into $LC/npm"
        mkdir -p "$LC/npm"
        (cd "$LC/npm" && { [ -f package.json ] || echo '{"name":"ds3-llamacpp-bench","private":true}' > package.json; } &&
            npm install --no-audit --no-fund --ignore-scripts node-llama-cpp@3.21.1 > install.log 2>&1) ||
            { echo "llamacpp_bench: npm install failed (see $LC/npm/install.log)"; return 1; }
    fi
    if [ ! -f "$LC/src/CMakeLists.txt" ]; then
        rm -rf "$LC/src"
        git clone -q "$LC/npm/node_modules/node-llama-cpp/llama/gitRelease.bundle" "$LC/src"
    fi
    echo "llamacpp_bench: building llama-bench (CPU, Release, native; ~17 min on 2 cores; log $LC/build.log)"
    J=${LLAMACPP_JOBS:-2}
    (cmake -S "$LC/src" -B "$LC/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DGGML_CUDA=OFF \
        -DGGML_VULKAN=OFF -DGGML_METAL=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF \
        -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DBUILD_SHARED_LIBS=OFF &&
        nice -n 10 cmake --build "$LC/build" --target llama-bench -j "$J") > "$LC/build.log" 2>&1 ||
        { echo "llamacpp_bench: build failed (tail of $LC/build.log):"; tail -20 "$LC/build.log"; return 1; }
    [ -x "$LC/build/bin/llama-bench" ]
}

LB=${LLAMA_BENCH:-$LC/build/bin/llama-bench}
if [ -z "$LLAMA_BENCH" ]; then build_llama_bench || { echo "# llamacpp_bench: skipped (no llama-bench)"; exit 0; }; fi
[ -n "$LLAMACPP_BUILD_ONLY" ] && { echo "llamacpp_bench: $LB ready"; exit 0; }

# 2. the models: the DeepSeek-V3-shaped synthetic checkpoint (BF16), converted by ds3
SRC=$OUT/v3-1b-bf16
[ -f "$SRC/config.json" ] || "$B/ds3" bench --synth "$SRC" --dtype bf16
for ty in $TYPES; do
    G=$LC/v3-1b-$ty.gguf
    [ -f "$G" ] || "$B/ds3" convert -m "$SRC" -o "$G" --type "$ty"
done

# 3. measure: llama-bench (-mmp 0: weights read into RAM) and ds3 bench (--no-mmap), same file
echo "== ds3 vs llama.cpp ($(basename "$LB"), node-llama-cpp 3.21.1 source), DeepSeek-V3-shaped 1.2B/0.2B, $T threads =="
printf "%-6s | %-22s | %-22s | %s\n" type "prompt pp$NP tok/s" "decode tg$NG tok/s" "ratio ds3/llama.cpp (pp, tg)"
# The two sides alternate (llama.cpp, ds3, llama.cpp, ds3) so both see the same minutes of a shared
# machine, and each side's best repetition counts (ds3 bench reports its best; for llama-bench the
# best of its per-repetition samples_ts, not its mean).
ROUNDS=${ROUNDS:-2}
for ty in $TYPES; do
    G=$LC/v3-1b-$ty.gguf
    ok=1
    for r in $(seq "$ROUNDS"); do
        "$LB" -m "$G" -t "$T" -p "$NP" -n "$NG" -r "$REPS" -mmp 0 -o json > "$LC/llama-$ty.$r.json" 2> "$LC/llama-$ty.log" ||
            { echo "llama-bench failed on $G (see $LC/llama-$ty.log)"; tail -5 "$LC/llama-$ty.log"; ok=0; break; }
        "$B/ds3" bench -m "$G" -t "$T" --no-mmap -p "$NP" -n "$NG" -r "$REPS" --json > "$LC/ds3-$ty.$r.json" 2> "$LC/ds3-$ty.log" ||
            { echo "ds3 bench failed on $G"; tail -5 "$LC/ds3-$ty.log"; ok=0; break; }
    done
    [ "$ok" = 1 ] || continue
    node -e '
const fs = require("fs");
const [ty, lc, rounds] = process.argv.slice(1);
let lpp = 0, ltg = 0, dpp = 0, dtg = 0;
for (let r = 1; r <= +rounds; r++) {
    const L = JSON.parse(fs.readFileSync(`${lc}/llama-${ty}.${r}.json`, "utf8"));
    const D = JSON.parse(fs.readFileSync(`${lc}/ds3-${ty}.${r}.json`, "utf8"));
    const pp = L.find(x => x.n_prompt > 0 && x.n_gen === 0), tg = L.find(x => x.n_gen > 0 && x.n_prompt === 0);
    const best = (x) => Math.max(x.avg_ts, ...(x.samples_ts || []));
    lpp = Math.max(lpp, best(pp)); ltg = Math.max(ltg, best(tg));
    dpp = Math.max(dpp, D.pp_tok_s); dtg = Math.max(dtg, D.tg_tok_s);
}
const f = (x) => x.toFixed(1).padStart(7);
console.log(`${ty.padEnd(6)} | ds3 ${f(dpp)} llama ${f(lpp)} | ds3 ${f(dtg)} llama ${f(ltg)} | ` +
            `pp x${(dpp / lpp).toFixed(2)} (target 1.5), tg x${(dtg / ltg).toFixed(2)} (target 2.0)`);
' "$ty" "$LC" "$ROUNDS"
done
