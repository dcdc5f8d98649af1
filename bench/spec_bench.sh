#!/bin/sh
# bench/spec_bench.sh -- MTP self-speculative decoding (docs/speculative.md): greedy decode at
# batch 1 with and without speculation, same prompt, repetitions interleaved in one process
# (`ds3 bench --spec`), on
#   1. models/default (the trained model), when it exists: the real acceptance; target >= 1.5x;
#   2. the synthetic 1.2B/0.2B bench model with an MTP that agrees with the main model
#      (`ds3 bench --synth --mtp-agree`, ~90% acceptance like DeepSeek's report): the ceiling;
#   3. the plain synthetic bench model (random MTP, ~0% acceptance): the floor (pure overhead).
# Prints acceptance rate, mean tokens per main step, decode tok/s plain and speculative on every
# step (the mechanism), speed-up, and the adaptive mode (--spec auto, the run/chat default): its
# tok/s relative to plain and the share of its tokens that came from speculative steps.
# THREADS=N, QUICK=1, DRAFTS="1 2" (drafts per step to measure) override the defaults.
B=${DS3_BUILD:-build}
OUT=bench/out
T=${THREADS:-2}
NG=64; REPS=3
[ -n "$QUICK" ] && { NG=32; REPS=1; }
DRAFTS=${DRAFTS:-1 2}
mkdir -p "$OUT"

measure() { # name model draft
    j="$OUT/spec-$1-d$3.json"
    if ! "$B/ds3" bench -m "$2" -t "$T" --no-mmap -p 32 -n "$NG" -r "$REPS" --spec --draft "$3" --json > "$j"; then
        echo "$1: ds3 bench failed"; return 1
    fi
    python3 - "$j" "$1" <<'PY' 2>/dev/null || cat "$j"
import json, sys
j = json.load(open(sys.argv[1]))
print(f"{sys.argv[2]:22s} draft {j['spec_draft']} | acceptance {100*j['spec_acceptance']:5.1f}% | "
      f"{j['spec_tokens_per_step']:.2f} tokens/step | decode plain {j['spec_plain_tg_tok_s']:6.2f} tok/s, "
      f"spec {j['spec_tg_tok_s']:6.2f} tok/s | speed-up {j['spec_speedup']:.2f}x | "
      f"auto {j['spec_auto_tg_tok_s']:6.2f} tok/s ({j['spec_auto_speedup']:.2f}x, "
      f"{100*j['spec_auto_spec_share']:.0f}% speculative)"
      f"{'' if j['spec_identical'] else ' | OUTPUT DIFFERS FROM PLAIN'}")
PY
}

echo "greedy decode tg$NG at batch 1, $T threads, best of $REPS (plain, speculative and auto interleaved)"
if [ -f models/default/config.json ]; then
    for d in $DRAFTS; do measure default models/default "$d"; done
    echo "(target on the trained default model: >= 1.5x)"
else
    echo "default                models/default not found (skipped)"
fi
M="$OUT/v3-1b-bf16-mtp-agree"
[ -f "$M/config.json" ] || "$B/ds3" bench --synth "$M" --dtype bf16 --mtp-agree
for d in $DRAFTS; do measure synth-agree-bf16 "$M" "$d"; done
M="$OUT/v3-1b-bf16"
[ -f "$M/config.json" ] || "$B/ds3" bench --synth "$M" --dtype bf16
measure synth-random-bf16 "$M" 1
