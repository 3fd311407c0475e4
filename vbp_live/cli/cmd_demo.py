"""``vbp-live demo``: the embedded default — a synthetic drive, the shipped model, an overlay video."""

from __future__ import annotations

import argparse

from vbp_live.cli.options import (
    DEFAULT_NAME,
    POSITIVE,
    SHIPPED_NAMES,
    HelpFormatter,
    add_device_option,
    add_look_options,
    add_trust_pickle_option,
    checkpoint_or_shipped,
    look_options,
    overlay_line,
    resolve_device,
)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``demo`` subcommand."""
    p = sub.add_parser(
        "demo",
        help="overlay the shipped model on a short synthetic drive (the embedded default)",
        description=(
            "Renders a short synthetic drive with known steering, runs the default shipped model (NetHVF) and "
            "VisualBackProp on every frame through the streaming pipeline, and writes an overlay "
            "video: what the network looks at in red, predicted vs actual steering wheel angle and "
            "the error. Without the shipped model an untrained NetHVF runs instead, clearly labelled."
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument("--out", "-o", metavar="FILE", default="out/vbp_demo.mp4",
                   help="overlay video to write (default: %(default)s)")
    p.add_argument("--frames", type=POSITIVE, default=120,
                   help="drive length in frames at 20 fps (default: %(default)s)")
    p.add_argument("--seed", type=int, default=7, help="which synthetic drive (default: %(default)s)")
    p.add_argument("--checkpoint", help="a checkpoint, a model card (.yaml) or a shipped model by name "
                                        f"({SHIPPED_NAMES}) instead of the shipped {DEFAULT_NAME}")
    add_trust_pickle_option(p)
    add_device_option(p)
    add_look_options(p, timeline=10.0)
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo and say where the video is, how fast it ran and how wrong the steering was."""
    from vbp_live.stream.demo import run_demo

    res = run_demo(args.out, args.frames, args.seed, resolve_device(args.device),
                   checkpoint_or_shipped(args.checkpoint) if args.checkpoint else None,
                   progress=not args.quiet, trust_pickle=args.trust_pickle, look=look_options(args))
    st = res.run.stats
    untrained = " -- the overlay shows the pipeline, not a trained network's attention"
    print(f"model: {res.model}" + ("" if res.trained else untrained))
    print(f"synthetic drive: {res.frames} frames (seed {args.seed}); {st.frames_out} overlaid at {st.fps:.1f} fps "
          f"end to end (model step alone {st.model_fps:.1f} fps)")
    if res.rmse_deg is not None:
        print(f"steering error RMSE: {res.rmse_deg:.2f} deg (actual - predicted, steering wheel angle)")
    if res.run.overlay:
        print(overlay_line(res.run.overlay))
    for path in res.run.outputs:
        print(f"wrote {path.resolve()}")
    if st.end_reason == "interrupted":
        from vbp_live.core.signals import exit_code

        print(f"ended: interrupted ({st.signal})")
        return exit_code(st.signal)  # 130 for Ctrl-C, 143 for SIGTERM
    if st.error:
        print(f"ended: {st.end_reason}: {st.error}")
        return 1
    return 0
