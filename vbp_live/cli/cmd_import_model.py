"""``vbp-live import-model CARD.yaml -o model.pt``: a model trained elsewhere as a vbp_live checkpoint."""

from __future__ import annotations

import argparse

from vbp_live.cli.options import HelpFormatter, add_trust_pickle_option

EPILOG = """\
formats (the card's 'format'; see docs/models.md):
  state_dict   PyTorch weights (weights-only load) + model.architecture (a registered net)
  torchscript  torch.jit.save file + model.architecture whose weights it holds
  onnx         converted to a registered net (outputs checked against onnxruntime)
  keras_h5     Keras 1.x/2.x .h5 read with h5py, no TensorFlow (Lambda layers from the card)
  pickle       torch.save(model) (needs --trust-pickle; runs code from the file)
  checkpoint   a vbp_live checkpoint (re-written with the card's description)
A card with model.class_path (your own class) works with --checkpoint CARD.yaml directly but
cannot become a checkpoint: loading a checkpoint never imports code."""


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``import-model`` subcommand."""
    p = sub.add_parser(
        "import-model",
        help="convert a model card's network (PyTorch, TorchScript, ONNX, Keras .h5) into a vbp_live checkpoint",
        description=(
            "Reads a model card (YAML next to the weights: format, architecture, the input the net "
            "expects, what its output means), loads the weights, checks they fit, and writes one "
            "vbp_live checkpoint (weights only, written atomically): the registered architecture, its "
            "weights, the card's preprocessing and the output's unit and sign. Every command then "
            "takes it with --checkpoint. On any error nothing is written."
        ),
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    p.add_argument("card", metavar="CARD", help="the model card (.yaml)")
    p.add_argument("--out", "-o", metavar="FILE", required=True,
                   help="checkpoint to write (.pt; no default; an existing file is replaced atomically)")
    add_trust_pickle_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load the card's model, write the checkpoint, say what it holds."""
    from vbp_live.core.errors import UsageError
    from vbp_live.io.model_card import import_checkpoint, is_card

    if not is_card(args.card):
        raise UsageError(f"CARD: expected a model card (.yaml or .yml), got {args.card}")
    path, ck = import_checkpoint(args.card, args.out, args.trust_pickle)
    print(f"wrote {path}: {ck.model_name}({ck.model_args}), input {ck.crop.channels}x{ck.crop.out_height}x"
          f"{ck.crop.out_width} {ck.crop.color}, steering = output[{ck.output.index}] x {ck.output.scale:.6g} "
          "(rad of steering wheel angle, positive = left)")
    return 0
