#!/bin/sh
# docs/exp/run_experiments.sh -- the runs behind docs/experiments.md (one thread each, in turn).
# Usage: sh docs/exp/run_experiments.sh OUTDIR
set -e
O=${1:-exp-runs}
D=${DS3:-build/ds3}
DATA=/work/shared/data/corpora/tinyshakespeare/input.txt
CFG=docs/exp/small-moe.json
common="--config $CFG --data $DATA --tokenizer bytes -t 1 --no-progress --log-interval 100"
$D train $common --out $O/lossfree --balance lossfree --bias-gamma 0.01
$D train $common --out $O/aux --balance aux --bal-alpha 0.01
$D train $common --out $O/none --balance none
$D train $common --out $O/lossfree-nomtp --balance lossfree --bias-gamma 0.01 --no-mtp
