#!/bin/sh
# bench/run.sh -- `make bench`: every speed figure of ds3, each next to a reference measured in
# the same run. Models are generated on the fly (random weights) into bench/out/ (ignored by git).
#   1. inference core: a DeepSeek-V3-shaped model of ~1.2B total / 0.2B active parameters in BF16
#      and in FP8, 2 threads, weights loaded into RAM: prompt tok/s (512), decode tok/s, bytes per
#      token, memory bandwidth (triad, same run) and decode as a fraction of that roofline. Decode
#      is timed from an empty cache (llama-bench's tg) and again after the prompt (@512). Each
#      thread's kernel speed from L2 is probed with the triad: a worst probe far below the best
#      says the host took cycles from a core during the run (decode then suffers, FP8 most).
#   2. every other bench/*_bench.sh script (tokenizer, speculative decoding, ...).
# THREADS=N overrides the thread count; QUICK=1 shortens the runs.
set -e
B=${DS3_BUILD:-build}
OUT=bench/out
T=${THREADS:-2}
mkdir -p "$OUT"
NP=512; NG=128; REPS=5 # best of 5 (llama-bench runs 5 repetitions by default)
[ -n "$QUICK" ] && { NP=128; NG=32; REPS=1; }
echo "== inference core: DeepSeek-V3-shaped 1.2B/0.2B, $T threads, weights in RAM =="
for dt in bf16 fp8; do
    M="$OUT/v3-1b-$dt"
    [ -f "$M/config.json" ] || "$B/ds3" bench --synth "$M" --dtype "$dt"
    "$B/ds3" bench -m "$M" -t "$T" --no-mmap -p "$NP" -n "$NG" -r "$REPS" --json > "$OUT/core-$dt.json"
    python3 - "$OUT/core-$dt.json" "$dt" <<'PY' 2>/dev/null || cat "$OUT/core-$dt.json"
import json, sys
j = json.load(open(sys.argv[1]))
print(f"{sys.argv[2]:5s} pp{j['n_prompt']} {j['pp_tok_s']:8.1f} tok/s | tg{j['n_gen']} {j['tg_tok_s']:6.2f} tok/s | "
      f"{j['bytes_per_token']/1e6:6.1f} MB/token | bw {j['mem_bw_gb_s']:5.1f} GB/s | "
      f"roofline {j['roofline_fraction']:.3f} (target >= 0.8) | tg{j['n_gen']}@{j['n_prompt']} {j['tg_depth_tok_s']:6.2f} tok/s, "
      f"roofline {j['roofline_fraction_depth']:.3f} | rss {j['rss_bytes']/1e6:.0f} MB <= {j['rss_limit_bytes']/1e6:.0f} MB: "
      f"{'ok' if j['rss_bytes'] <= j['rss_limit_bytes'] else 'OVER'} | kernel (L2) best "
      f"{'/'.join('%.1f' % g for g in j['kernel_gw_s'])}, worst {j['kernel_gw_s_min']:.1f} G weights/s per thread")
PY
done
for s in bench/*_bench.sh; do
    [ -e "$s" ] || continue
    echo "== $s =="
    sh "$s" || echo "($s failed)"
done
