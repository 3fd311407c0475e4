#!/usr/bin/env python
"""Does the shipped model look at lane markings? VisualBackProp mask mass on lane pixels vs their area.

    python scripts/lane_focus.py --drive runs/shipped/heldout_svf runs/shipped/synth_heldout/ground_truth.npz

For each drive (a prepared dataset of a synthetic drive + that drive's ground truth), on
``--frames`` frames spread evenly over the drive: the model's steering error on those frames (RMSE
in rad and in degrees of steering wheel angle, within 1/5 degrees; output and mask come from the
same forward pass) and, per ground-truth class, the *focus*

    focus = (share of VBP mask mass on the class's pixels) / (share of the image those pixels cover)

pooled over the frames (1 = no preference; target for lane markings >= 5 on held-out drives, issue 19).
The ground-truth masks go through the same crop/resize as the frames (vbp_live.core.preprocess). The same numbers
for the same architecture with random weights are printed as a baseline.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from vbp_live.attribution import VisualBackProp
from vbp_live.core.metrics import MassTally
from vbp_live.core.preprocess import CropSpec, preprocess_frame
from vbp_live.io.checkpoint import load_checkpoint
from vbp_live.io.dataset import PreparedDataset
from vbp_live.io.ground_truth import load_ground_truth
from vbp_live.models import create_model, frames_to_input
from vbp_live.stream.session import DEFAULT_MODEL, SHIPPED

CLASSES = ("lane", "hmark", "shadow", "car", "road")
LANE_TARGET = 5.0  # issue 19: lane-marking focus on held-out synthetic drives
DEFAULT_CKPT = SHIPPED  # the default shipped model


def gt_rows(ds: PreparedDataset, frame_times_ns: np.ndarray, path: Path) -> np.ndarray:
    """Ground-truth frame index of every dataset row (matched by camera timestamp, exactly)."""
    pos = np.searchsorted(frame_times_ns, ds.timestamps_ns).clip(0, len(frame_times_ns) - 1)
    bad = frame_times_ns[pos] != ds.timestamps_ns
    if bad.any():
        raise ValueError(
            f"{path}: {bad.sum()} of {len(ds)} frames of {ds.path} have no ground-truth frame "
            "with the same timestamp (a different drive?)"
        )
    return pos


def fits(data: CropSpec, model: CropSpec) -> bool:
    """Whether a dataset's crop is the model's: the same band (a reference horizon aside), or the
    model's band moved to the dataset's horizon (``prep --horizon``)."""
    if data.same_band(model):
        return True
    return data.horizon is not None and model.horizon is not None and model.at_horizon(data.horizon) == data


def region_share(mask: np.ndarray, crop: CropSpec) -> np.ndarray:
    """A full-frame bool mask through the network's crop/resize: fraction of each input pixel covered."""
    return preprocess_frame(mask.astype(np.uint8) * 255, crop).astype(np.float64) / 255.0  # (h, w)


def measure(
    vbp: VisualBackProp, ds: PreparedDataset, gt, rows: np.ndarray, gt_idx: np.ndarray, batch: int = 8
) -> tuple[dict[str, MassTally], np.ndarray]:
    """VBP on ``rows``: per class the mask mass on it pooled over the frames, and the predictions."""
    sums = {c: MassTally() for c in CLASSES}
    preds = []
    for i in range(0, len(rows), batch):
        r = rows[i : i + batch]
        with torch.no_grad():
            res = vbp.run(frames_to_input(np.asarray(ds.frames[r])))  # one forward: output + mask
        preds.append(res.output.reshape(-1).double().numpy())
        for m, g in zip(res.mask[:, 0].double().numpy(), gt_idx[r], strict=True):  # (h, w) each
            gtm = gt.masks(int(g))
            for c in CLASSES:
                sums[c].add(m, region_share(getattr(gtm, c), ds.crop))
    return sums, np.concatenate(preds)


def steering_line(pred: np.ndarray, truth: np.ndarray) -> str:
    err = np.degrees(pred - truth)
    rmse = float(np.sqrt(np.mean((pred - truth) ** 2)))
    zero = float(np.degrees(np.sqrt(np.mean(truth**2))))
    return (
        f"steering: RMSE {rmse:.4f} rad = {np.degrees(rmse):.2f} deg SWA, "
        f"within 1 deg {np.mean(np.abs(err) <= 1):.1%}, "
        f"within 5 deg {np.mean(np.abs(err) <= 5):.1%} (always-0 predictor: {zero:.2f} deg)"
    )


def report(name: str, model: torch.nn.Module, baseline: torch.nn.Module, ds: PreparedDataset, gt, n: int) -> float:
    """Print the steering error and the focus table of one drive; returns the lane focus."""
    rows = np.linspace(0, len(ds) - 1, min(n, len(ds))).round().astype(int)
    gidx = gt_rows(ds, np.asarray(gt.frame_times_ns), Path(gt.path))
    trained, pred = measure(VisualBackProp(model), ds, gt, rows, gidx)
    rand, _ = measure(VisualBackProp(baseline), ds, gt, rows, gidx)
    print(f"\n## {name}: {len(rows)} of {len(ds)} frames ({ds.path})")
    print(steering_line(pred, ds.steering[rows].astype(np.float64)))
    print("| class | area share | mask share (trained) | focus (trained) | focus (random weights) |")
    print("|---|---|---|---|---|")
    for c in CLASSES:
        t = trained[c]
        print(f"| {c} | {t.area_share():.3%} | {t.share():.3%} | {t.ratio():.2f} | {rand[c].ratio():.2f} |")
    lane = trained["lane"].ratio()
    verdict = "PASS" if lane >= LANE_TARGET else "below target"
    print(f"lane-marking focus {lane:.2f} (target >= {LANE_TARGET:g}: {verdict})")
    return lane


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=str(DEFAULT_CKPT), help=f"default: the shipped {DEFAULT_MODEL}")
    p.add_argument(
        "--drive",
        nargs=2,
        action="append",
        required=True,
        metavar=("DATASET", "GROUND_TRUTH"),
        help="a prepared dataset of a synthetic drive and its ground_truth.npz (repeatable)",
    )
    p.add_argument("--frames", type=int, default=200, help="frames per drive for the VBP measure")
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    ck = load_checkpoint(args.checkpoint)
    model = ck.build_model()
    torch.manual_seed(0)
    baseline = create_model(ck.model_name, **ck.model_args).eval()
    print(f"checkpoint {args.checkpoint}: {ck.model_name}{ck.model_args}")
    for ds_path, gt_path in args.drive:
        ds = PreparedDataset(ds_path)
        if not fits(ds.crop, ck.crop):
            raise SystemExit(f"{ds_path}: crop {ds.crop} differs from the checkpoint's {ck.crop}")
        report(Path(ds_path).name, model, baseline, ds, load_ground_truth(gt_path), args.frames)


if __name__ == "__main__":
    main()
