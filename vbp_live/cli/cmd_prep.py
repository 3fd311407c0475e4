"""``vbp-live prep``: Udacity-style recordings -> synchronized, filtered, cropped training data."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from vbp_live.cli.options import SHIPPED_NAMES, checkpoint_or_shipped
from vbp_live.core.config import SET_HELP, Override

if TYPE_CHECKING:
    from vbp_live.core.preprocess import CropSpec

# Kept here so `vbp-live --help` imports no reader; tests check they equal recordings.formats.KINDS,
# data_prep.config.crop_presets() and recordings.options.ANGLE_UNITS.
KINDS = ("auto", "bag", "dump", "sim", "comma2k19", "tub", "folder")
PRESETS = ("donkey", "nethvf", "netsvf", "pilotnet", "signnet")
ANGLE_UNITS = ("deg", "rad", "normalized")

EPILOG = """\
inputs: .bag files (several = one drive, merged in time), a folder of bags, a bag-dump folder
(camera.csv + steering.csv + center/*.jpg), a simulator driving_log.csv (or its folder), a
comma2k19 segment folder (with video.hevc: frames; without: --labels-only), a donkeycar tub v2
(manifest.json) or v1 (meta.json), several tubs or a folder of tubs (sessions in time order),
or a folder of frames with data.txt (`0.jpg 12.5`, degrees) or a labels CSV with a header.
Tubs and data.txt folders have no speed: the speed filter is skipped (the manifest says so).

steps (configs/prep.yaml; override any key with --set KEY=VALUE):
  1 sync steering + speed onto camera header stamps (linear | zoh); frames before the first /
    after the last sample or in a gap > sync.max_gap_s are dropped and counted, never zero-filled
  2 center camera   3 speed > 5 m/s   4 grayscale   5 crop + resize (netsvf 640x125, nethvf 351x125)
  6 time-ordered split: the last frames are the test set

An interrupted run (Ctrl-C, kill) leaves only OUT.partial; the same command resumes it.

examples:
  vbp-live prep drive1.bag drive2.bag -o data/udacity --model netsvf
  vbp-live prep HMB_dump/ -o data/hmb --sync zoh --test-count 20000
  vbp-live prep segment/ -o labels/ --labels-only
  vbp-live prep mycar/data/ -o data/donkey --model donkey --mode user
  vbp-live prep driving_dataset/ -o data/sully --angle-unit deg --positive right --fps 30
"""


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``prep`` subcommand."""
    p = sub.add_parser(
        "prep",
        help="prepare a training dataset from bags / dumps / simulator logs",
        description="Turn driving recordings into a prepared dataset: uint8 frames (memory-mapped), "
        "index.csv (timestamp ns, steering rad, speed m/s, source, split) and manifest.yaml "
        "(full config, counts read/kept/dropped per reason).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", help="recording files or folders (see below)")
    p.add_argument("-o", "--out", required=True, help="dataset directory to create")
    p.add_argument("--config", help="prep YAML (default: built-in defaults = configs/prep.yaml)")
    p.add_argument("--model", choices=list(PRESETS), help="crop preset (crop.preset)")
    p.add_argument("--crop-of", metavar="CHECKPOINT",
                   help=f"the crop of this checkpoint (.pt) or shipped model ({SHIPPED_NAMES}): "
                        "the dataset then fits that model, e.g. to fine-tune it (train.init_from)")
    p.add_argument("--horizon", type=float, metavar="FRAC",
                   help="crop.source_horizon: the horizon row of the recordings (fraction of the height); the band "
                        "moves with it from the horizon it was chosen for (crop.horizon, which --crop-of copies)")
    p.add_argument("--sync", choices=["linear", "zoh"], help="sync.method")
    p.add_argument("--max-gap", type=float, metavar="S", help="sync.max_gap_s")
    p.add_argument("--min-speed", type=float, metavar="MPS", help="filter.min_speed_mps")
    p.add_argument("--test-fraction", type=float, help="split.test_fraction")
    p.add_argument("--test-count", type=int, help="split.test_count (wins over the fraction)")
    p.add_argument("--camera-topic", action="append", metavar="TOPIC", help="camera.topics (repeatable)")
    p.add_argument("--steering-topic", help="steering.topic")
    p.add_argument("--threads", type=int, help="decode.threads")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE", help=SET_HELP)
    p.add_argument("--kind", default="auto", choices=list(KINDS), help="input kind")
    rec = p.add_argument_group("tubs and frame folders")
    rec.add_argument("--angle-unit", choices=list(ANGLE_UNITS), help="folder.angle_unit (frame folders)")
    rec.add_argument("--positive", choices=["left", "right"],
                     help="which way a positive recorded angle turns (tub.positive_right, folder.positive_right)")
    rec.add_argument("--full-scale-deg", type=float, metavar="DEG",
                     help="angle of a normalized 1.0 (tub.full_scale_deg, folder.full_scale_deg)")
    rec.add_argument("--fps", type=float, help="folder.fps: frame rate of frame folders without a time column")
    rec.add_argument("--min-throttle", type=float, help="tub.min_throttle: keep records with more throttle")
    rec.add_argument("--mode", dest="modes", action="append", metavar="MODE",
                     help="tub.modes: keep only records with this user/mode (repeatable)")
    p.add_argument("--labels-only", action="store_true", help="write the synchronized index only (no frames)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.add_argument("--restart", action="store_true", help="ignore an interrupted run's progress; start clean")
    p.add_argument("--bench", action="store_true", help="print frames/s and where the time goes")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


# option -> the config key it sets (its value is already typed by argparse)
FLAG_KEYS = {"--model": "crop.preset", "--horizon": "crop.source_horizon",
             "--sync": "sync.method", "--max-gap": "sync.max_gap_s",
             "--min-speed": "filter.min_speed_mps", "--test-fraction": "split.test_fraction",
             "--test-count": "split.test_count", "--camera-topic": "camera.topics",
             "--steering-topic": "steering.topic", "--threads": "decode.threads",
             "--angle-unit": "folder.angle_unit", "--fps": "folder.fps", "--min-throttle": "tub.min_throttle",
             "--mode": "tub.modes"}
# options that set one key in each of several sections
FLAG_MULTI_KEYS = {"--full-scale-deg": ("tub.full_scale_deg", "folder.full_scale_deg"),
                   "--positive": ("tub.positive_right", "folder.positive_right")}


def overrides(args: argparse.Namespace, crop_of: CropSpec | None = None) -> list[Override | str]:
    """Config overrides from the command line: the shortcut options, ``--crop-of``'s crop (``crop_of``,
    resolved by :func:`model_crop`), then every ``--set`` in order."""
    out: list[Override | str] = []
    for flag, key in FLAG_KEYS.items():
        value = getattr(args, "modes" if flag == "--mode" else flag[2:].replace("-", "_"))
        if value is not None:
            out.append(Override(key, value, f"{flag} {value}"))
    for flag, keys in FLAG_MULTI_KEYS.items():
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is not None:
            typed = value == "right" if flag == "--positive" else value
            out += [Override(k, typed, f"{flag} {value}") for k in keys]
    if crop_of is not None:  # every crop key prep can set
        spec = crop_of.to_dict()
        out += [Override(f"crop.{k}", spec[k], f"--crop-of {args.crop_of}") for k in CROP_KEYS]
    return out + list(args.sets)


CROP_KEYS = ("top", "bottom", "left", "right", "out_height", "out_width", "color", "interpolation",  # CropConfig's
             "horizon")


def model_crop(name: str | None) -> CropSpec | None:
    """``--crop-of``: the crop of a checkpoint or shipped model (None without the option)."""
    if not name:
        return None
    from vbp_live.io.checkpoint import load_checkpoint

    return load_checkpoint(checkpoint_or_shipped(name)).crop


def _check_crop_of(name: str, want: CropSpec, got: CropSpec) -> None:
    """The crop prep will write is the model's (fields prep cannot set, e.g. a scale, must agree too)."""
    if got != want:
        from vbp_live.core.errors import ConfigError

        have = got.to_dict()
        diff = [k for k, v in want.to_dict().items() if have[k] != v]
        raise ConfigError(f"--crop-of {name}: the crop prep would write differs from the model's in "
                          f"{', '.join(diff)}")


def run(args: argparse.Namespace) -> int:
    """Run the preparation and print the summary."""
    from data_prep.config import load_config
    from data_prep.pipeline import prepare
    from data_prep.report import summary_table, timing_table

    crop_of = model_crop(args.crop_of)
    cfg = load_config(args.config, overrides(args, crop_of))
    if crop_of is not None:
        _check_crop_of(args.crop_of, crop_of, cfg.crop.base_spec())
    try:
        res = prepare(args.inputs, args.out, cfg, kind=args.kind, labels_only=args.labels_only,
                      overwrite=args.overwrite, resume=not args.restart, progress=not args.no_progress)
    except KeyboardInterrupt:
        print(f"interrupted: progress kept in {args.out}.partial; run the same command again to resume",
              file=sys.stderr)
        raise
    print(summary_table(res))
    if args.bench or not args.labels_only:
        print(timing_table(res))
    return 0
