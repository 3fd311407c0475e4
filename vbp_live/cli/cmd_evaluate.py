"""``vbp-live evaluate``: the quantitative comparison of attribution methods on one model."""

from __future__ import annotations

import argparse

from vbp_live.cli.cmd_explain import add_method_options, method_names, method_options
from vbp_live.cli.options import (
    COUNT,
    POSITIVE,
    HelpFormatter,
    add_checkpoint_option,
    checkpoint_or_shipped,
    float_in,
    resolve_device,
)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` subcommand."""
    p = sub.add_parser(
        "evaluate",
        help="measure attribution methods: speed, perturbation curves, ground-truth mass, agreement, sanity",
        description=(
            "Runs every chosen attribution method on the same frames, model, batch, threads and device and writes "
            "a markdown report with PNG plots: ms/frame; region perturbation (most relevant first) curves and "
            "AOPC on the predicted steering angle; deletion and insertion curves; on synthetic drives, the "
            "relevance mass on lane markings, horizontal markings, shadows and cars relative to their area; "
            "agreement of each method with VisualBackProp (Spearman rho, top-k IoU); and the cascading "
            "randomization sanity check (Adebayo et al.). Reproducible for --seed (except timings); an "
            "interrupted run resumes from <out>/cache. Without --checkpoint the shipped model is measured."
        ),
        epilog=(
            "DATA: a synthetic drive (folder with ground_truth.npz from `vbp-live synth`; frames are re-rendered "
            "exactly and the masks enable the ground-truth table), a prepared dataset (folder with manifest.yaml), "
            "an image folder or a video. Example: vbp-live synth --out drive --frames 200 --format gt && "
            "vbp-live evaluate --data drive --frames 16"
        ),
        formatter_class=HelpFormatter,
    )
    add_checkpoint_option(p)
    p.add_argument("--data", required=True, help="synthetic drive, prepared dataset, image folder or video")
    p.add_argument("--out", "-o", metavar="DIR", default="evaluation", help="output folder (default: %(default)s)")
    p.add_argument("--frames", type=POSITIVE, default=16, help="frames sampled evenly from DATA (default: %(default)s)")
    p.add_argument("--split", choices=("train", "test"), default=None,
                   help="prepared datasets: 'train' or 'test' (default: test if present)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of noise, tie-breaks and randomized weights (default: %(default)s)")
    add_method_options(p)
    p.set_defaults(methods="vbp,lrp,saliency,deconvnet,gbp,gradcam,pda_grad")
    p.add_argument("--patch", type=POSITIVE, default=10,
                   help="region size for region perturbation (default: %(default)s)")
    p.add_argument("--steps", type=POSITIVE, default=16,
                   help="steps of every perturbation curve (default: %(default)s)")
    p.add_argument("--region-fraction", type=float_in(0.0, 1.0, low_open=True), default=0.25,
                   help="share of the regions perturbed by the last step (default: %(default)s)")
    p.add_argument("--region-fill", choices=("noise", "blur", "mean"), default="noise",
                   help="what perturbed regions become: uniform noise (Samek et al.), the blurred image or the "
                        "image mean (default: %(default)s; noise adds edges of its own)")
    p.add_argument("--sanity-frames", type=COUNT, default=4,
                   help="frames for the randomization check, 0 = skip (default: %(default)s)")
    p.add_argument("--no-resume", action="store_true", help="ignore results cached by an earlier run")
    p.set_defaults(func=run)


def _split(data: str, split: str | None) -> str | None:
    from pathlib import Path

    if split is not None or not (Path(data) / "manifest.yaml").is_file():
        return split
    from vbp_live.io.dataset import PreparedDataset

    return "test" if len(PreparedDataset(data).indices("test")) else None


def run(args: argparse.Namespace) -> int:
    """Load, evaluate, write the report; print where it is and the headline numbers."""
    import datetime
    import shutil
    from pathlib import Path

    from tqdm import tqdm

    from vbp_live.evaluate.inputs import load_samples
    from vbp_live.evaluate.perturb import PerturbSettings
    from vbp_live.evaluate.report import write_report
    from vbp_live.evaluate.run import EvalConfig, ResultCache, evaluate, fingerprint
    from vbp_live.io.model_card import open_model

    cfg = EvalConfig(
        methods=method_names(args), batch=args.batch, seed=args.seed, device=resolve_device(args.device),
        perturb=PerturbSettings(patch=args.patch, steps=args.steps, region_fraction=args.region_fraction,
                                region_fill=args.region_fill),
        sanity_frames=args.sanity_frames, options=method_options(args),
    )
    ckpt_path = checkpoint_or_shipped(args.checkpoint)
    ckpt = open_model(ckpt_path, args.trust_pickle)
    model = ckpt.build_model(cfg.device)
    samples = load_samples(args.data, ckpt.crop, args.frames, _split(args.data, args.split))
    out = Path(args.out)
    cache_dir = out / "cache"
    if args.no_resume and cache_dir.exists():
        shutil.rmtree(cache_dir)
    cache = ResultCache(cache_dir, fingerprint(ckpt_path, samples, cfg))
    meta = {"checkpoint": str(ckpt_path), "data": str(args.data),
            "date": datetime.datetime.now().isoformat(timespec="seconds")}
    results, maps = evaluate(samples, model, cfg, cache, progress=tqdm, meta=meta, crop=ckpt.crop)
    paths = write_report(results, maps, samples, ckpt.crop, out)
    print(f"wrote {paths[0]} (+ {len(paths) - 1} files in {out})")
    for name, r in results["methods"].items():
        print(f"  {name:10s} {r['ms_per_frame']:8.1f} ms/frame  AOPC {57.29578 * r['aopc']:.3f} deg")
    return 0
