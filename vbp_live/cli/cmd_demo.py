"""``vbp-live demo``: the embedded default (a smoke run of the core until the streaming demo lands)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``demo`` subcommand."""
    p = sub.add_parser(
        "demo",
        help="run the main job on the embedded default",
        description="Runs NetSVF + VisualBackProp on a bundled sample frame and writes the overlay PNG.",
    )
    p.add_argument("--out", default="vbp_demo.png", help="where to write the overlay (default: %(default)s)")
    p.set_defaults(func=run)


def _sample_frame():
    """A procedurally drawn 640x480 road frame (lane markings on asphalt)."""
    import cv2
    import numpy as np

    img = np.full((480, 640, 3), (200, 170, 140), np.uint8)
    cv2.rectangle(img, (0, 240), (640, 480), (70, 70, 70), -1)
    for x_top, x_bot, color in ((300, 60, (255, 255, 255)), (340, 580, (0, 220, 255))):
        cv2.line(img, (x_top, 240), (x_bot, 480), color, 6)
    return img


def run(args: argparse.Namespace) -> int:
    """Smoke run: preprocess, attribute, overlay, write."""
    import time

    import cv2
    import torch

    from vbp_live.attribution import VisualBackProp
    from vbp_live.core.overlay import overlay_mask
    from vbp_live.core.preprocess import CROP_PRESETS, mask_to_frame, preprocess_frame
    from vbp_live.models import create_model, frames_to_input

    torch.manual_seed(0)
    frame, spec = _sample_frame(), CROP_PRESETS["netsvf"]
    model = create_model("netsvf").eval()
    x = frames_to_input(preprocess_frame(frame, spec)[None])  # (1, 1, 125, 640)
    t0 = time.perf_counter()
    with torch.inference_mode():
        res = VisualBackProp(model).run(x)
    ms = 1000 * (time.perf_counter() - t0)
    full = mask_to_frame(res.mask[0, 0].numpy(), spec, frame.shape)
    cv2.imwrite(args.out, overlay_mask(frame, full))
    print(f"wrote {args.out}: steering {res.output.item():+.4f} rad (untrained net), forward+VBP {ms:.1f} ms")
    return 0
