"""``vbp-live bench``: VisualBackProp vs the forward pass, ε-LRP and the peer libraries, in one run."""

from __future__ import annotations

import argparse

from vbp_live.cli.options import (
    COUNT,
    POSITIVE,
    SHIPPED_NAMES,
    HelpFormatter,
    add_device_option,
    add_trust_pickle_option,
    checkpoint_or_shipped,
    resolve_device,
)

EPILOG = """\
Rows include the forward pass unless named "pass alone". On a GPU run, e.g.:
  vbp-live bench --device cuda --batches 1,64 --markdown docs/bench-gpu.md
Peers: Captum (pip install captum, the 'peers' extra); zennit and pytorch-grad-cam
(pip install zennit grad-cam; they need torchvision). Peers that do not import are listed
with the reason; the timings of what did run are still valid.
"""


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size wants HEIGHTxWIDTH, e.g. 125x640; got {text!r}") from None
    return h, w


def _ints(text: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not vals or min(vals) < 1:
        raise argparse.ArgumentTypeError(f"batch sizes must be >= 1, got {text!r}")
    return vals


def _check_size(models: tuple[str, ...], size: tuple[int, int]) -> None:
    """Every model can be built for ``--size`` (too small an input leaves no pixels after the convolutions)."""
    from vbp_live.core.errors import UsageError
    from vbp_live.models import create_model

    for name in models:
        try:
            create_model(name, height=size[0], width=size[1])
        except (ValueError, RuntimeError) as e:
            raise UsageError(f"--size {size[0]}x{size[1]}: too small for {name} ({str(e).splitlines()[0]})") from e


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``bench`` subcommand."""
    p = sub.add_parser(
        "bench",
        help="time VisualBackProp against the forward pass, ε-LRP and peer libraries",
        description=(
            "Times, in one run and on the same model, batch, threads and device: the forward pass "
            "alone; VisualBackProp fast, reference and fused (Triton, CUDA only; with and without a CUDA graph); "
            "the VBP pass alone vs its memory bound; our ε-LRP (ε = 100); Captum LRP / Saliency / "
            "GuidedBackprop / LayerGradCam, zennit ε-LRP and pytorch-grad-cam GradCAM where they "
            "import. Prints ms/frame and two ratios to the forward pass: of the fastest repeats, and "
            "the median of each round's own ratio (steadier on a shared machine), with notes on each "
            "target."
        ),
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    p.add_argument("--models", default="netsvf,nethvf", help="comma-separated model names (default: %(default)s)")
    p.add_argument("--checkpoint", metavar="FILE", default=None,
                   help="time this checkpoint, model card (.yaml, see docs/models.md) or shipped model "
                        f"({SHIPPED_NAMES}) instead of --models")
    add_trust_pickle_option(p)
    p.add_argument("--batches", type=_ints, default=(1, 16), help="comma-separated batch sizes (default: 1,16)")
    p.add_argument("--size", type=_size, default=None,
                   help="input HEIGHTxWIDTH for the models (default: each model's own)")
    p.add_argument("--repeats", type=POSITIVE, default=5,
                   help="timed repeats per method; the fastest is shown (default: %(default)s)")
    p.add_argument("--threads", type=COUNT, default=0, help="torch threads (0 = torch's default)")
    add_device_option(p)
    p.add_argument("--no-reference", action="store_true", help="skip the slow reference implementation")
    p.add_argument("--no-peers", action="store_true", help="skip the peer libraries (Captum, zennit, pytorch-grad-cam)")
    p.add_argument("--markdown", metavar="FILE", help="also write the report (table, notes, skips) as markdown to FILE")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the benchmark, print the report, optionally write it as markdown."""
    import torch

    from vbp_live.bench.core import BenchConfig, run_bench
    from vbp_live.core.errors import UsageError
    from vbp_live.io.atomic import write_text_atomic
    from vbp_live.models import list_models

    models = tuple(m for m in args.models.split(",") if m)
    unknown = [m for m in models if m not in list_models()]
    if args.checkpoint and args.size:
        raise UsageError("--size: the input size of --checkpoint is its own; leave --size out")
    if (unknown or not models) and not args.checkpoint:
        raise UsageError(f"--models: unknown model(s) {', '.join(unknown) or '(none)'}; "
                         f"registered: {', '.join(list_models())}")
    if args.size and not args.checkpoint:
        _check_size(models, args.size)
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = BenchConfig(
        models=models, batches=args.batches, repeats=max(1, args.repeats), device=device,
        size=args.size, reference=not args.no_reference, peers=not args.no_peers,
        checkpoint=str(checkpoint_or_shipped(args.checkpoint)) if args.checkpoint else "",
        trust_pickle=args.trust_pickle,
    )
    report = run_bench(cfg, progress=True)
    text = report.to_markdown()
    print(text)
    if args.markdown:
        write_text_atomic(args.markdown, text)
        print(f"wrote {args.markdown}")
    return 0
