#!/usr/bin/env python
"""How steering models behave on real dashcam clips (no steering log): prints and writes JSON.

    python scripts/real_clips.py                                  # the default shipped model on ../shared/data/video
    python scripts/real_clips.py --checkpoint a.pt --checkpoint b.pt --clip my_drive.mp4 --out real.json
    python scripts/real_clips.py --paint-figure docs/images/paint_rule.png --crops-figure docs/images/real_crops.png

Per checkpoint and clip, from the raw per-frame output in degrees of steering wheel angle (positive =
left): mean and standard deviation, p50/p95 of |pred[t] - pred[t-1]|, the mean on the near-straight
highway stretches of the clip table (docs/evaluation/real_clips.yaml), and the lane-paint focus
(share of VisualBackProp mask mass on lane paint / share of the crop band the paint covers; paint by
the colour rule of vbp_live/evaluate/paint.py). Pass/fail against the targets of issue 19:
focus >= 5, p95 <= 2 deg, |mean| <= 3 deg on near-straight stretches. See docs/evaluation/real_clips.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import shlex
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

from vbp_live.core.errors import InputError, VbpLiveError
from vbp_live.core.preprocess import CropSpec
from vbp_live.evaluate.paint import PaintPanel, PaintRule, draw_paint, paint_figure, paint_mask
from vbp_live.evaluate.real_clips import (
    TARGETS,
    Band,
    ClipEntry,
    ClipResult,
    ClipTable,
    draw_bands,
    load_table,
    report_lines,
    run_clip,
    summarize,
)
from vbp_live.io.atomic import atomic_path, write_text_atomic
from vbp_live.io.model_card import open_model
from vbp_live.io.sources import open_source
from vbp_live.stream.session import SHIPPED

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "docs" / "evaluation" / "real_clips.yaml"
BAND_COLORS = [(40, 39, 214), (14, 127, 255), (189, 103, 148), (34, 189, 188)]
RECOMMENDED_COLOR = (44, 200, 44)
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")


def shared_data() -> Path:
    """``shared/data`` beside the checkout or beside a folder above it (a git worktree)."""
    for base in ROOT.parents:
        if (base / "shared" / "data").is_dir():
            return base / "shared" / "data"
    return ROOT.parent / "shared" / "data"


def shown(path: str) -> str:
    """A path as written in reports: relative to the repository when inside it."""
    p = Path(path).resolve()
    return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", action="append", help="a checkpoint or model card (repeatable; default: shipped)")
    p.add_argument("--clip", action="append", default=[], help="another video file to measure (repeatable)")
    p.add_argument("--clip-horizon", type=float, default=None,
                   help="horizon row of the --clip videos as a fraction of the height (default: the band's top)")
    p.add_argument("--follow-horizon", action="store_true",
                   help="move the model's crop band to each clip's horizon (as `vbp-live run --horizon` does; "
                        "needs a checkpoint whose crop has a reference horizon)")
    p.add_argument("--table", default=str(TABLE), help="the clip table (default: docs/evaluation/real_clips.yaml)")
    p.add_argument("--data", default=None,
                   help="folder the table's paths are relative to; its video/ clips are all measured "
                        "(default: ../shared/data)")
    p.add_argument("--skip-table", action="store_true",
                   help="measure only the --clip videos (not the table's nor the other videos in DATA/video)")
    p.add_argument("--max-frames", type=int, default=None, help="read at most this many frames per clip")
    p.add_argument("--batch", type=int, default=16, help="frames per forward pass")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--out", default="real_clips.json", help="JSON results (written atomically)")
    p.add_argument("--paint-figure", default=None, help="PNG: frames of each clip with paint pixels and crop band")
    p.add_argument("--crops-figure", default=None, help="PNG: each real source with the crop bands")
    p.add_argument("--figure-frames", type=int, default=3, help="frames per clip in the paint figure")
    return p.parse_args(argv)


def clip_list(args: argparse.Namespace, table: ClipTable, data: Path) -> list[tuple[Path, ClipEntry]]:
    """(path, entry) of every clip to measure: the table's and every other video in ``data/video``
    (unless --skip-table), then the --clip ones. Table entries give horizon and straight stretches."""
    clips: list[tuple[Path, ClipEntry]] = []
    if not args.skip_table:
        clips = [(data / c.file, c) for c in table.clips]
        known = {p.resolve() for p, _ in clips}
        clips += [(p, ClipEntry(file=str(p.relative_to(data)))) for p in sorted((data / "video").glob("*"))
                  if p.suffix.lower() in VIDEO_SUFFIXES and p.resolve() not in known]
    clips += [(Path(c), ClipEntry(file=c, horizon=args.clip_horizon)) for c in args.clip]
    for path, _ in clips:
        if not path.is_file():
            raise InputError(f"{path}: no such clip (see --data / --clip)")
    return clips


def measure(ckpt: str, clips: list[tuple[Path, ClipEntry]], args: argparse.Namespace) -> dict[str, object]:
    """Run one checkpoint over the clips; prints the table; returns the JSON part of this checkpoint."""
    ck = open_model(ckpt)
    model = ck.build_model()
    results: list[ClipResult] = []
    bands = []
    for path, entry in clips:
        crop = ck.crop.at_horizon(entry.horizon) if args.follow_horizon and entry.horizon is not None else ck.crop
        bands.append(f"{path.name}: rows {crop.top:.3f}-{crop.bottom:.3f}")
        with open_source(str(path)) as src:
            run = run_clip(model, crop, src, entry.horizon, max_frames=args.max_frames, batch=args.batch)
        results.append(summarize(path.name, np.asarray(run.indices), np.asarray(run.pred_deg), run.tally,
                                 entry.straight))
    band = "; ".join(bands) if args.follow_horizon else f"rows {ck.crop.top:.3f}-{ck.crop.bottom:.3f}"
    print(f"\n## {shown(ckpt)} ({ck.model_name}, crop {band})\n")
    print("\n".join(report_lines(results)))
    return {"checkpoint": shown(ckpt), "model": ck.model_name, "crop": ck.crop.to_dict(),
            "follow_horizon": args.follow_horizon, "clips": [r.to_dict() for r in results]}


def pick_frames(path: Path, n: int, limit: int | None) -> list[tuple[int, np.ndarray]]:
    """``n`` frames spread evenly over a clip (its first ``limit`` frames), read through the frame sources."""
    with open_source(str(path)) as src:
        total = min(src.info.total or 1, limit or 10**9)
        want = set(np.linspace(0, total - 1, max(1, n)).round().astype(int).tolist())
        return [(r.index, r.image) for r in src.frames() if r.index in want and r.index < total]


def write_png(path: str, image: np.ndarray, drop_bits: int = 3) -> None:
    """Write a PNG atomically, with 2**(8 - drop_bits) levels per channel (photos compress ~2x better;
    docs/images keeps files under 300 KB)."""
    half = (1 << drop_bits) >> 1
    image = ((image >> drop_bits) << drop_bits) | half  # (H, W, 3) uint8, each level at its bin's middle
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), image, [cv2.IMWRITE_PNG_COMPRESSION, 9]):
            raise InputError(f"{path}: cannot write the figure")


def paint_rule_figure(clips: list[tuple[Path, ClipEntry]], crop: CropSpec, args: argparse.Namespace) -> np.ndarray:
    """Frames of each clip: paint pixels (magenta), crop band (light frame), horizon (blue)."""
    panels = []
    for path, entry in clips:
        for index, image in pick_frames(path, args.figure_frames, args.max_frames):
            box = crop.box(*image.shape[:2])
            paint = paint_mask(image, box[:2], entry.horizon, PaintRule())
            share = paint[box[0]:box[1], box[2]:box[3]].mean()
            panels.append(PaintPanel(draw_paint(image, paint, box, entry.horizon),
                                     f"{path.stem} frame {index}: paint {share:.1%} of the band"))
    return paint_figure(panels, cols=args.figure_frames, width=360)


def crops_figure(sources: list[tuple[Path, ClipEntry]], crops: dict[str, CropSpec], table: ClipTable,
                 args: argparse.Namespace) -> np.ndarray:
    """Each real source (middle frame of a clip, or a still) with the checkpoints' bands and the recommended one."""
    panels = []
    for path, entry in sources:
        if path.suffix.lower() in (".png", ".jpg", ".jpeg"):
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                raise InputError(f"{path}: cannot read the image")
            index = None
        else:
            frames = pick_frames(path, 3, args.max_frames)
            index, image = frames[len(frames) // 2]
        h = image.shape[0]
        bands = [Band(y0 / h, y1 / h, f"{name} {y0 / h:.2f}-{y1 / h:.2f}", BAND_COLORS[k % len(BAND_COLORS)])
                 for k, (name, c) in enumerate(crops.items()) for y0, y1, _, _ in [c.box(*image.shape[:2])]]
        rec = table.recommended_crop
        if rec is not None:
            bands.append(Band(rec.top, rec.bottom, f"recommended {rec.top:.2f}-{rec.bottom:.2f}", RECOMMENDED_COLOR))
        horizon = "unknown" if entry.horizon is None else f"{entry.horizon:.3f}"
        caption = f"{path.name}{'' if index is None else f' frame {index}'}: horizon {horizon}" + (
            f", hood from {entry.hood:.2f}" if entry.hood is not None else ", no hood")
        panels.append(PaintPanel(draw_bands(image, bands, entry.horizon, entry.hood), caption))
    return paint_figure(panels, cols=1, width=540)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    table = load_table(args.table) if Path(args.table).is_file() or not args.skip_table else ClipTable()
    data = Path(args.data) if args.data else shared_data()
    clips = clip_list(args, table, data)
    ckpts = args.checkpoint or [str(SHIPPED)]
    out = {"command": shlex.join([Path(sys.argv[0]).name, *(sys.argv[1:] if argv is None else argv)]),
           "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
           "units": "degrees of steering wheel angle, positive = left; raw per-frame output",
           "targets": TARGETS, "paint_rule": dataclasses.asdict(PaintRule()),
           "checkpoints": [measure(c, clips, args) for c in ckpts]}
    print("\ntargets: " + "; ".join(TARGETS.values()))
    write_text_atomic(args.out, json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")
    crops = {f"{k + 1}: {Path(c).stem}" if len(ckpts) > 1 else Path(c).stem: open_model(c).crop
             for k, c in enumerate(ckpts)}
    if args.paint_figure:
        write_png(args.paint_figure, paint_rule_figure(clips, next(iter(crops.values())), args))
        print(f"wrote {args.paint_figure}")
    if args.crops_figure:
        stills = [(data / s.file, s) for s in table.stills]
        write_png(args.crops_figure, crops_figure(clips + stills, crops, table, args))
        print(f"wrote {args.crops_figure}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except VbpLiveError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
