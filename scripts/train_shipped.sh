#!/usr/bin/env bash
# Reproduce the shipped model vbp_live/assets/netsvf_synth.pt end to end:
#   synthetic drives -> vbp-live prep -> vbp-live train -> fp16 export -> held-out RMSE + lane focus.
# Everything goes under runs/shipped/ (git-ignored). About 45-60 min on 2 CPU cores (mostly training;
# see configs/shipped_netsvf.yaml for what was reduced to fit). Re-running resumes an interrupted
# training run (Ctrl-C saves a checkpoint) instead of starting over.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=runs/shipped
mkdir -p "$OUT"

# 1. Two synthetic drives: seed 1 to train on (its last 10% validates), seed 2 held out for the test.
[ -f "$OUT/synth_train/ground_truth.npz" ] || vbp-live synth --out "$OUT/synth_train" --seed 1 --frames 6000 --format bag,gt
[ -f "$OUT/synth_heldout/ground_truth.npz" ] || vbp-live synth --out "$OUT/synth_heldout" --seed 2 --frames 2000 --format bag,gt

# 2. The paper's preprocessing (sync, speed > 5 m/s, gray, NetSVF crop 640x125, time-ordered split).
[ -f "$OUT/train_svf/manifest.yaml" ] || vbp-live prep "$OUT/synth_train/synth_seed1.bag" -o "$OUT/train_svf" --model netsvf --test-fraction 0.1
[ -f "$OUT/heldout_svf/manifest.yaml" ] || vbp-live prep "$OUT/synth_heldout/synth_seed2.bag" -o "$OUT/heldout_svf" --model netsvf --test-fraction 0.1

# 3. Train (resume if a previous run was interrupted; skip if it finished).
if [ -f "$OUT/run/last.pt" ]; then
  vbp-live train --config configs/shipped_netsvf.yaml --resume
else
  vbp-live train --config configs/shipped_netsvf.yaml
fi

# 4. Compact fp16 export with the held-out metrics in its meta, then the lane-marking focus per drive.
python scripts/export_model.py "$OUT/run/last.pt" vbp_live/assets/netsvf_synth.pt --test "$OUT/heldout_svf"
python scripts/lane_focus.py --checkpoint vbp_live/assets/netsvf_synth.pt \
  --drive "$OUT/heldout_svf" "$OUT/synth_heldout/ground_truth.npz" \
  --drive "$OUT/train_svf" "$OUT/synth_train/ground_truth.npz"
