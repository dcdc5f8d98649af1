#!/bin/sh
# train_cli.sh -- `ds3 train` end to end on a tiny model (tests/fixtures/train/tiny.json, byte
# tokens): a straight run, the same run stopped by --stop-after and resumed, and the same run
# interrupted by SIGINT (Ctrl-C) and resumed must give identical logs (losses, val losses) and
# bit-identical weights and optimizer state; the checkpoint loads in `ds3 logits`; PNGs exist.
# Owned by the training engineer.
B=${DS3_BUILD:-build}
D="$B/ds3"
CFG=tests/fixtures/train/tiny.json
DATA=tests/fixtures/tokenizer/corpus/o_almada.txt
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
pass=0; fail=0
ok() { pass=$((pass+1)); }
bad() { fail=$((fail+1)); echo "FAIL train_cli: $*"; }
losses() { sed -E 's/"tok_s":[^,]*,//; s/"elapsed_s":[^,]*,//' "$1"; }  # drop timing fields
run() { "$D" train --config $CFG --data $DATA --tokenizer bytes -t 2 -q --steps 120 --eval-interval 40 --eval-windows 32 --ckpt-interval 50 "$@"; }

run --out "$W/a" || bad "straight run failed"
[ -f "$W/a/ckpt/model.safetensors" ] && [ -f "$W/a/ckpt/tokenizer.json" ] && [ -f "$W/a/ckpt/config.json" ] \
  && [ -f "$W/a/ckpt/tokenizer_config.json" ] && ok || bad "checkpoint files missing"
[ "$(wc -l < "$W/a/log.jsonl")" -eq 120 ] && ok || bad "log has $(wc -l < "$W/a/log.jsonl") lines, want 120"
grep -q '"val_loss"' "$W/a/log.jsonl" && grep -q '"maxvio_global"' "$W/a/log.jsonl" && ok || bad "no eval fields in log"
[ -s "$W/a/loss.png" ] && [ -s "$W/a/maxvio.png" ] && head -c 4 "$W/a/loss.png" | grep -q PNG && ok || bad "no PNG curves"

# --stop-after + --resume
run --out "$W/b" --stop-after 70 || bad "stop-after run failed"
grep -q '"step": 70' "$W/b/ckpt/trainer_state.json" && ok || bad "checkpoint after --stop-after is not at step 70"
"$D" train --out "$W/b" --resume -t 2 -q || bad "resume failed"
cmp -s "$W/a/ckpt/model.safetensors" "$W/b/ckpt/model.safetensors" && ok || bad "weights differ after stop/resume"
cmp -s "$W/a/ckpt/optimizer.safetensors" "$W/b/ckpt/optimizer.safetensors" && ok || bad "optimizer state differs after stop/resume"
[ "$(losses "$W/a/log.jsonl")" = "$(losses "$W/b/log.jsonl")" ] && ok || bad "logs differ after stop/resume"

# Ctrl-C (SIGINT) + --resume
"$D" train --config $CFG --data $DATA --tokenizer bytes -t 2 -q --steps 120 --eval-interval 40 --eval-windows 32 \
  --ckpt-interval 50 --out "$W/d" & pid=$!  # the binary itself, not a function (a subshell ignores SIGINT)
i=0; while [ "$(cat "$W/d/log.jsonl" 2>/dev/null | wc -l)" -lt 10 ] && [ $i -lt 400 ]; do sleep 0.02; i=$((i+1)); done
kill -INT $pid; wait $pid; rc=$?
if [ $rc -eq 130 ]; then
  ok
  n=$(wc -l < "$W/d/log.jsonl")
  [ "$n" -lt 120 ] && ok || bad "SIGINT did not stop the run early"
  "$D" train --out "$W/d" --resume -t 2 -q || bad "resume after SIGINT failed"
  cmp -s "$W/a/ckpt/model.safetensors" "$W/d/ckpt/model.safetensors" && ok || bad "weights differ after SIGINT/resume"
  [ "$(losses "$W/a/log.jsonl")" = "$(losses "$W/d/log.jsonl")" ] && ok || bad "logs differ after SIGINT/resume"
elif [ $rc -eq 0 ]; then
  echo "# run finished before SIGINT arrived; SIGINT part skipped"; ok
else
  bad "SIGINT exit status $rc (want 130)"
fi

# the checkpoint loads in ds3 logits (and ds3 run)
"$D" logits -m "$W/a/ckpt" --tokens 72,101,108,108,111 -o "$W/l.bin" --mtp-out "$W/m.bin" -t 1 2>/dev/null && \
  [ "$(wc -c < "$W/l.bin")" -eq $((5*256*4)) ] && ok || bad "ds3 logits cannot use the checkpoint"
"$D" run -m "$W/a/ckpt" --tokens 72,101 -n 4 --temp 0 -t 1 >/dev/null 2>&1 && ok || bad "ds3 run cannot use the checkpoint"

echo "# train_cli: $pass passed, $fail failed"
[ $fail -eq 0 ]
