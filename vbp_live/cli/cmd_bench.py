"""``vbp-live bench``: forward alone vs forward + VisualBackProp, in one run."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``bench`` subcommand."""
    p = sub.add_parser(
        "bench",
        help="time forward vs forward + VisualBackProp (ms/frame and ratio)",
        description=(
            "Times, in one run and on the same model, batch, threads and device: the forward pass "
            "alone, forward + VisualBackProp (fast path) and forward + the slow reference. Prints "
            "ms/frame and the ratio to the forward pass as a markdown table."
        ),
    )
    p.add_argument("--models", default="netsvf,nethvf", help="comma-separated model names (default: %(default)s)")
    p.add_argument("--batches", default="1,16", help="comma-separated batch sizes (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=7, help="timed repeats per measurement; the median is shown")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--no-reference", action="store_true", help="skip the slow reference implementation")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the benchmark and print the table."""
    import torch

    from vbp_live.bench.core import core_bench, rows_to_markdown

    if args.threads:
        torch.set_num_threads(args.threads)
    rows = core_bench(
        models=tuple(args.models.split(",")),
        batches=tuple(int(b) for b in args.batches.split(",")),
        repeats=args.repeats,
        reference=not args.no_reference,
        device=args.device,
    )
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}")
    print(rows_to_markdown(rows))
    return 0
