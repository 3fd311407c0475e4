#!/usr/bin/env python
"""Export a training checkpoint as a compact shipped model (fp16 weights, no optimizer state).

    python scripts/export_model.py runs/randomized/run_svf_varied/last.pt vbp_live/assets/netsvf_randomized.pt \
        --test runs/randomized/heldout_201_svf --test runs/randomized/heldout_fixed_2_svf

Keeps the model name/args, the crop and the training config; drops ``train_state``; stores the
metrics of the training run and, with ``--test``, the metrics of the fp16 model on every frame of
a held-out prepared dataset in ``meta``. Prints both.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from vbp_live.io.checkpoint import load_checkpoint, save_checkpoint
from vbp_live.io.dataset import PreparedDataset
from vbp_live.train.data import successors
from vbp_live.train.metrics import batch_sums, error_stats, finish, predictions, step_stats


def held_out(model: torch.nn.Module, ds: PreparedDataset) -> dict[str, float | int | str]:
    """The model's metrics on every frame of ``ds``, beside those of always predicting 0; printed too.

    Also the frame-to-frame change of the predictions against the truth's (the jitter that the
    real-clip report measures where there is no truth), and where the error comes from
    (:func:`vbp_live.train.metrics.error_stats`: bias, gain, large angles).
    """
    model.eval()
    pred = predictions(model, ds.frames, np.arange(len(ds)))  # (N,) rad: the one pass over the frames
    m = finish(batch_sums(torch.from_numpy(pred), torch.from_numpy(ds.steering), "mse"), "mse")
    steps = step_stats(pred, ds.steering.astype(np.float64), successors(ds.timestamps_ns, ds.sources, ds.split))
    err = error_stats(pred, ds.steering)
    zero_deg = float(np.degrees(np.sqrt(np.mean(np.square(ds.steering, dtype=np.float64)))))
    print(f"held-out {ds.path} ({len(ds)} frames): "
          f"RMSE {m['val_rmse_rad']:.4f} rad = {m['val_rmse_deg']:.2f} deg SWA (predicting 0: {zero_deg:.2f} deg), "
          f"within 1 deg {m['val_within_1deg']:.1%}, within 5 deg {m['val_within_5deg']:.1%}, "
          f"frame-to-frame change p50/p95 {steps['step_p50_deg']:.2f}/{steps['step_p95_deg']:.2f} deg "
          f"(truth p95 {steps['truth_step_p95_deg']:.2f}); mean error {err['error_mean_deg']:+.2f} deg, "
          f"gain {err['gain']:.2f}, correlation {err['corr']:.2f}, RMSE where |truth| >= 20 deg "
          f"{err['large_rmse_deg']:.2f} ({err['large_frames']} frames)")
    return {"dataset": str(ds.path), "frames": len(ds), "zero_rmse_deg": zero_deg, **m, **steps, **err}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="a training checkpoint (run_dir/last.pt)")
    p.add_argument("out", help="where to write the compact checkpoint")
    p.add_argument("--test", action="append", default=[],
                   help="a held-out prepared dataset: all its frames are evaluated (repeatable)")
    p.add_argument("--horizon", type=float, metavar="FRAC",
                   help="store the horizon row (fraction of the height) of the camera the crop band was chosen "
                        "for, so that `vbp-live run --horizon` can move the band to another camera's")
    args = p.parse_args()
    ck = load_checkpoint(args.checkpoint)
    model = ck.build_model()
    crop = ck.crop if args.horizon is None else replace(ck.crop, horizon=args.horizon)
    if ck.train_state is None and "train_metrics" in ck.meta:  # exported before (e.g. to add --horizon): keep it
        meta = {k: v for k, v in ck.meta.items() if k != "test" or not args.test}
    else:
        meta = {"source": str(args.checkpoint), "train_metrics": ck.meta.get("metrics", {}),
                "data": ck.meta.get("data", {})}
    path = save_checkpoint(args.out, model, crop, ck.config, None, meta, half=True)
    if args.test:
        shipped = load_checkpoint(path).build_model()  # evaluate what is shipped: fp16 weights
        meta["test"] = {Path(t).name: held_out(shipped, PreparedDataset(t)) for t in args.test}
        path = save_checkpoint(args.out, model, crop, ck.config, None, meta, half=True)
    print(f"train run: {meta.get('train_metrics', {})}")
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
