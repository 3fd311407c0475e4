"""``vbp-live explain``: side-by-side maps of several attribution methods, like the paper's Figures 15-19."""

from __future__ import annotations

import argparse

from vbp_live.cli.options import (
    POSITIVE,
    HelpFormatter,
    add_checkpoint_option,
    add_device_option,
    checkpoint_or_shipped,
    float_in,
    int_in,
    resolve_device,
)


def add_method_options(p: argparse.ArgumentParser) -> None:
    """Options shared by ``explain`` and ``evaluate``: which methods and their settings."""
    p.add_argument("--methods", default="vbp,lrp,saliency,gbp,gradcam",
                   help="comma-separated attribution methods, or 'all' "
                        "(vbp,lrp,saliency,deconvnet,gbp,gradcam,pda,pda_grad; default: %(default)s)")
    p.add_argument("--lrp-epsilon", type=float_in(0.0), default=100.0, help="epsilon of eps-LRP (paper: %(default)s)")
    p.add_argument("--pda-window", type=POSITIVE, default=10, help="PDA window size k (default: %(default)s)")
    p.add_argument("--pda-patch", type=POSITIVE, default=18, help="PDA surrounding patch size l (default: %(default)s)")
    p.add_argument("--pda-stride", type=POSITIVE, default=None,
                   help="PDA window stride (default: = window; pda runs one forward pass per window: "
                        "832 passes per 125x640 frame with the defaults)")
    p.add_argument("--signed-maps", action="store_true",
                   help="VisualBackProp: average ELU/LeakyReLU/... maps as they are (default: their positive "
                        "part; ReLU nets are the same either way)")
    add_device_option(p)
    p.add_argument("--batch", type=POSITIVE, default=8, help="frames per attribution call (default: %(default)s)")


def method_names(args: argparse.Namespace) -> list[str]:
    """The methods ``--methods`` names, checked (``UsageError`` names the unknown ones)."""
    from vbp_live.core.errors import UsageError
    from vbp_live.evaluate.figures import parse_methods

    try:
        return parse_methods(args.methods)
    except ValueError as e:
        raise UsageError(f"--methods: {e}") from e


def method_options(args: argparse.Namespace) -> dict[str, dict]:
    """Per-method constructor kwargs from the shared options (``UsageError`` if they contradict)."""
    from vbp_live.core.errors import UsageError

    if args.pda_window > args.pda_patch:
        raise UsageError(f"--pda-window {args.pda_window} is larger than --pda-patch {args.pda_patch}")
    pda = {"window": args.pda_window, "patch": args.pda_patch, "stride": args.pda_stride}
    vbp = {"positive": not args.signed_maps}
    return {"lrp": {"epsilon": args.lrp_epsilon}, "pda": dict(pda), "pda_grad": dict(pda),
            "vbp": dict(vbp), "vbp_fused": dict(vbp), "vbp_reference": dict(vbp)}


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``explain`` subcommand."""
    p = sub.add_parser(
        "explain",
        help="side-by-side PNGs of VisualBackProp and other attribution methods on frames",
        description=(
            "Runs the checkpoint's network on INPUT and draws, per frame, the input and each method's map "
            "in red (VisualBackProp, eps-LRP, saliency, DeconvNet, guided backprop, Grad-CAM, prediction "
            "difference analysis), with the predicted steering wheel angle and, where the actual angle is "
            "known, the error (actual - predicted) in degrees. Signed methods show the evidence for the "
            "predicted direction (eps-LRP, Grad-CAM, PDA) or |gradient| (saliency, DeconvNet, guided backprop). "
            "Without --checkpoint the shipped model runs."
        ),
        epilog=(
            "INPUT: an image file, an image folder, a video file, a Udacity .bag, a prepared dataset "
            "(folder with manifest.yaml; actual angles included) or a synthetic drive (folder with "
            "ground_truth.npz, re-rendered exactly). Example: vbp-live explain drive.mp4 "
            "--methods vbp,lrp --frames 4"
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument("input", metavar="INPUT",
                   help="image, image folder, video, .bag, prepared dataset or synthetic drive")
    add_checkpoint_option(p)
    p.add_argument("--out", "-o", metavar="DIR", default="explain_out",
                   help="output folder for the PNGs (default: %(default)s)")
    p.add_argument("--frames", type=POSITIVE, default=8,
                   help="frames sampled evenly from a folder/video/dataset (default: %(default)s)")
    p.add_argument("--split", choices=("train", "test"), default=None,
                   help="prepared datasets: 'train' or 'test' (default: every frame)")
    p.add_argument("--steering", default=None,
                   help="actual steering wheel angle in rad for a single image, or a CSV of file names and "
                        "angles (columns filename/angle or steering_rad)")
    add_method_options(p)
    p.add_argument("--panel-width", type=int_in(32), default=480,
                   help="width of each panel in pixels (default: %(default)s)")
    p.add_argument("--cols", type=POSITIVE, default=3, help="panels per row (default: %(default)s)")
    p.add_argument("--percentile", type=float_in(0.0, 100.0, low_open=True), default=99.5,
                   help="map percentile shown as full red (100 = the maximum; default: %(default)s)")
    p.add_argument("--video", metavar="FILE", default=None,
                   help="also write the figures, one per frame, as a video (.mp4: H.264 that browsers play)")
    p.add_argument("--video-fps", type=float_in(0.0, low_open=True), default=2.0,
                   help="figures per second in --video (default: %(default)s)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load, attribute, draw, write; print one line per frame."""
    from pathlib import Path

    from tqdm import tqdm

    from vbp_live.evaluate.figures import describe_output, run_explain
    from vbp_live.evaluate.inputs import apply_steering, load_samples
    from vbp_live.io.model_card import open_model

    names = method_names(args)
    options = method_options(args)
    device = resolve_device(args.device)
    ckpt = open_model(checkpoint_or_shipped(args.checkpoint), args.trust_pickle)
    model = ckpt.build_model(device)
    samples = load_samples(args.input, ckpt.crop, args.frames, args.split)
    apply_steering(samples, args.steering)
    paths, outputs, ms = run_explain(
        samples, model, ckpt.crop, names, Path(args.out), device, args.batch, options,
        args.panel_width, args.cols, args.percentile, progress=tqdm,
    )
    for s, out, path in zip(samples, outputs, paths, strict=True):
        print(f"{path}: {describe_output(out, s.truth_rad)}")
    print("ms/frame: " + ", ".join(f"{n} {v:.1f}" for n, v in ms.items()) + f" ({device}, batch {args.batch})")
    if args.video:
        write_figure_video(paths, args.video, args.video_fps)
    return 0


def write_figure_video(paths: list, video: str, fps: float) -> None:
    """The written figures as one video (the one writer: ``vbp_live.io.video_writer``)."""
    import cv2

    from vbp_live.io.video_writer import write_video

    path, n, codec = write_video(video, (cv2.imread(str(p)) for p in paths), fps)
    print(f"wrote {path} ({n} figures at {fps:g} fps, {codec})")
