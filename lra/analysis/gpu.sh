#!/usr/bin/env bash
# The sparse analysis on a GPU machine: bash lra/analysis/gpu.sh [CKPT ...]
# Part 1 (python -m lra.analysis sparse) on CUDA with three seeds and the learned baseline at every length;
# part 2 on the checkpoints given, or, with none given, on ListOps runs trained here first: softmax and
# taylorshift, LRA's preset, STEPS steps (default 5000, LRA's schedule). Files under ${OUT:-results}/analysis;
# the tables are printed.
set -euo pipefail
out="${OUT:-results}/analysis"
checkpoints=("$@")
if [ ${#checkpoints[@]} -eq 0 ]; then
  for attention in softmax taylorshift; do
    python train.py experiment=lra/listops attention="$attention" trainer=gpu logger=none \
      run_id="sparse-$attention" trainer.max_steps="${STEPS:-5000}"
    checkpoints+=("$(ls models/listops/"$attention"/*/"sparse-$attention"/checkpoints/best-*.ckpt | head -n 1)")
  done
fi
python -m lra.analysis sparse sparse.device=cuda "sparse.seeds=[0,1,2]" \
  "sparse.learned.lengths=[64,256,1024,4096]" "sparse.learned.dims=[2,4,8,16,32,64,128]" \
  "sparse.ckpt=[$(IFS=,; echo "${checkpoints[*]}")]" sparse.out_dir="$out"
