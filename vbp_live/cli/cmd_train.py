"""``vbp-live train``: train a network on a prepared dataset (one process, or many under torchrun)."""

from __future__ import annotations

import argparse
import logging
import os
import shlex

from vbp_live.core.config import SET_HELP, Override

EPILOG = """\
examples:
  vbp-live train --config configs/netsvf.yaml --set data.path=data/udacity_svf
  vbp-live train --config configs/netsvf.yaml --set optim.lr=0.05 --set train.epochs=8
  vbp-live train --config configs/netsvf.yaml --resume          # continue run_dir/last.pt exactly
  torchrun --nproc_per_node=4 -m vbp_live.cli.main train --config configs/netsvf.yaml   # DDP

The run directory (run_dir) receives config.yaml (the resolved config), metrics.csv (one row per
epoch: validation RMSE in rad and degrees of steering wheel angle, within 1 and 5 degrees,
frames/s), snapshots/strip_*.png (VisualBackProp masks over training, the paper's Figure 5) and
last.pt (the checkpoint; written every epoch and on Ctrl-C / SIGTERM)."""


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``train`` subcommand."""
    p = sub.add_parser(
        "train",
        help="train NetSVF / NetHVF / the sign net (SGD, MSE, VisualBackProp snapshots, resumable)",
        description=(
            "Trains a registered network with the paper's protocol by default (SGD, mean squared "
            "error, 32 epochs) in an explicit loop. Ctrl-C or SIGTERM saves a resumable checkpoint "
            "at the next step boundary; --resume continues exactly where it stopped."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", required=True, help="YAML config (see configs/netsvf.yaml)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE", help=SET_HELP)
    p.add_argument("--device", help="auto (CUDA if available, else CPU), cpu, cuda, cuda:1 "
                   "(default: train.device of the config, which defaults to auto)")
    p.add_argument("--resume", action="store_true", help="continue from <run_dir>/last.pt")
    p.set_defaults(func=run)


def overrides(args: argparse.Namespace) -> list[Override | str]:
    """Config overrides from the command line: ``--device``, then every ``--set`` in order."""
    device = [Override("train.device", args.device, f"--device {args.device}")] if args.device else []
    return device + list(args.sets)


def run(args: argparse.Namespace) -> int:
    """Load the config, train, print where everything went."""
    from tqdm.contrib.logging import logging_redirect_tqdm

    from vbp_live.train.config import load_config
    from vbp_live.train.run import train

    cfg = load_config(args.config, overrides(args))
    main_rank = int(os.environ.get("RANK", "0")) == 0  # under torchrun only rank 0 talks
    if not main_rank:
        logging.getLogger().setLevel(logging.WARNING)
    with logging_redirect_tqdm():
        result = train(cfg, resume=args.resume)
    if not main_rank:
        return result.exit_code
    m = result.metrics
    summary = ", ".join(f"{k} {v:.4g}" for k, v in m.items() if k.startswith("val_") and isinstance(v, float))
    print(f"{result.status} at step {result.global_step}: {summary or 'no epoch finished yet'}")
    print(f"checkpoint: {result.checkpoint}   run dir: {result.run_dir}")
    if result.status == "interrupted":
        again = "".join(f" --set {shlex.quote(o)}" for o in args.sets)
        again += f" --device {args.device}" if args.device else ""
        print(f"resume with: vbp-live train --config {args.config} --resume{again}")
        return result.exit_code  # 130 after Ctrl-C, 143 after SIGTERM
    return 0
