"""Write the evaluation report: ``report.md`` (tables and what they say, computed from the numbers),
``results.json`` (everything measured) and PNG plots drawn with OpenCV."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vbp_live.core.plot import line_chart
from vbp_live.core.preprocess import CropSpec
from vbp_live.evaluate.figures import LABELS, explain_figure, write_png
from vbp_live.evaluate.inputs import Sample
from vbp_live.io.atomic import write_text_atomic

DEG = 180.0 / math.pi
MASK_LABELS = {"lane": "lane markings", "hmark": "horizontal markings", "shadow": "shadows", "car": "cars"}


def _label(name: str) -> str:
    return LABELS.get(name, name)


def _f(v: float, fmt: str = ".3f") -> str:
    return "n/a" if v is None or not math.isfinite(v) else format(v, fmt)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A markdown table."""
    def row(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([row(headers), "|" + "---|" * len(headers)] + [row(r) for r in rows])


_FILL_TEXT = {"noise": "uniform noise", "blur": "the blurred image", "mean": "the image mean"}


def _fill(p: dict) -> str:
    return p.get("region_fill", "noise")  # reports written before the option existed used noise


def _series(results: dict[str, Any], key: str, xs: np.ndarray, scale: float = DEG) -> dict[str, tuple]:
    out = {_label(n): (xs, np.asarray(r[key]) * scale) for n, r in results["methods"].items()}
    out["random ranking"] = (xs, np.asarray(results["random"][key]) * scale)
    return out


def plots(results: dict[str, Any], out: Path) -> dict[str, Path]:
    """Region perturbation, deletion, insertion and sanity charts."""
    p = results["meta"]["perturb"]
    steps = np.arange(p["steps"] + 1) / p["steps"]
    paths = {
        "region": write_png(out / "region_perturbation.png", line_chart(
            _series(results, "region_curve", steps * p["region_fraction"]),
            f"Region perturbation, most relevant {p['patch']}x{p['patch']} regions first ({_fill(p)})",
            "fraction of regions replaced", "|dy| (deg SWA)")),
        "deletion": write_png(out / "deletion.png", line_chart(
            _series(results, "deletion_curve", steps), "Deletion: most relevant pixels -> blurred (higher = better)",
            "fraction of pixels deleted", "|dy| (deg SWA)")),
        "insertion": write_png(out / "insertion.png", line_chart(
            _series(results, "insertion_curve", steps), "Insertion: most relevant pixels first (lower = better)",
            "fraction of pixels inserted", "|dy| (deg SWA)")),
    }
    sanity = {_label(n): (np.arange(len(r["sanity"]) + 1), [1.0] + r["sanity"])
              for n, r in results["methods"].items() if r.get("sanity")}
    if sanity:
        paths["sanity"] = write_png(out / "sanity.png", line_chart(
            sanity, "Cascading randomization: rank correlation with the trained model's maps",
            "layers randomized (from the output)", "Spearman rho"))
    return paths


def _speed(results: dict[str, Any]) -> str:
    fwd = results["forward_ms"]
    rows = [["forward pass alone", _f(fwd, ".1f"), "1.00"]]
    for n, r in results["methods"].items():
        note = " (cached from an earlier run)" if r.get("cached") else ""
        rows.append([_label(n) + note, _f(r["ms_per_frame"], ".1f"), _f(r["ms_per_frame"] / fwd, ".2f")])
    return table(["method", "ms/frame", "x forward"], rows)


def _perturbation(results: dict[str, Any]) -> str:
    rnd = results["random"]
    g = ".3g"  # an untrained net moves its output by 1e-5 deg: keep significant digits
    rows = [[_label(n), _f(r["aopc"] * DEG, g), _f(r["aopc"] / rnd["aopc"], ".2f") if rnd["aopc"] > 0 else "n/a",
             _f(r["deletion_auc"] * DEG, g), _f(r["insertion_auc"] * DEG, g)] for n, r in results["methods"].items()]
    rows.append(["random ranking", _f(rnd["aopc"] * DEG, g), "1.00", _f(rnd["deletion_auc"] * DEG, g),
                 _f(rnd["insertion_auc"] * DEG, g)])
    text = table(["method", "AOPC (deg)", "AOPC / random", "deletion AUC (deg, higher better)",
                  "insertion AUC (deg, lower better)"], rows)
    best = max(results["methods"], key=lambda n: results["methods"][n]["aopc"])
    worse = [_label(n) for n, r in results["methods"].items() if r["aopc"] <= rnd["aopc"]]
    text += (f"\n\nHighest AOPC: {_label(best)} ({_f(results['methods'][best]['aopc'] * DEG, g)} deg vs "
             f"{_f(rnd['aopc'] * DEG, g)} deg for a random ranking). ")
    text += ("Not better than the random ranking: " + ", ".join(worse) + "." if worse
             else "Every method beats the random ranking.")
    return text


def _mass(results: dict[str, Any]) -> str:
    area = results.get("area_share") or {}
    if not area:
        return ("No ground-truth masks in this data. Run on a synthetic drive (a folder with "
                "`ground_truth.npz` from `vbp-live synth`) to measure where the relevance falls.")
    keys = [k for k in MASK_LABELS if k in area]
    rows = []
    for n, r in results["methods"].items():
        rows.append([_label(n)] + [f"{_f(r['mass'][k]['ratio'], '.2f')} ({_f(100 * r['mass'][k]['share'], '.1f')} %)"
                                   if k in r["mass"] else "n/a" for k in keys])
    rows.append(["share of the image area"] + [f"{_f(100 * area[k], '.1f')} %" for k in keys])
    return ("Relevance share on each class divided by the class's share of the image area (1 = no preference, "
            "> 1 = concentrated there; relevance share in parentheses; positive relevance only; mean over the "
            "frames where the class is visible).\n\n" + table(["method"] + [MASK_LABELS[k] for k in keys], rows))


def _agreement(results: dict[str, Any]) -> str:
    ag = results.get("agreement") or {}
    if not ag:
        return "VisualBackProp was not among the methods; no agreement measured."
    fr = [k for k in next(iter(ag.values())) if k.startswith("iou_top")]
    rows = [[_label(n) if n in LABELS else n.replace("lrp", _label("lrp")),
             f"{_f(a['spearman'], '.2f')} +- {_f(a['spearman_std'], '.2f')}"] + [_f(a[k], ".3f") for k in fr]
            for n, a in ag.items()]
    chance = ", ".join(f"top-{k[7:]} % IoU {int(k[7:]) / 100 / (2 - int(k[7:]) / 100):.3f}" for k in fr)
    text = table(["method vs VisualBackProp", "Spearman rho (mean +- std over frames)"]
                 + [f"top-{k[7:]} % IoU" for k in fr], rows)
    text += f"\n\nIndependent maps would give rho = 0 and {chance}."
    if "lrp" in ag:
        a, b = ag["lrp"], ag.get("lrp |R|", ag["lrp"])
        text += (f" The paper calls the VisualBackProp and eps-LRP masks \"very similar\"; measured here: rho = "
                 f"{_f(a['spearman'], '.2f')} (with |R|: {_f(b['spearman'], '.2f')}), top-{fr[0][7:]} % IoU = "
                 f"{_f(a[fr[0]], '.3f')} (with |R|: {_f(b[fr[0]], '.3f')}).")
    return text


def _sanity(results: dict[str, Any]) -> str:
    meths = {n: r for n, r in results["methods"].items() if r.get("sanity")}
    if not meths:
        return "Skipped (--sanity-frames 0)."
    layers = next(iter(meths.values()))["sanity_layers"]
    rows = [[f"{k + 1}: {name}"] + [_f(r["sanity"][k], ".3f") for r in meths.values()] for k, name in enumerate(layers)]
    text = table(["layers randomized (top-down)"] + [_label(n) for n in meths], rows)
    head = next((k for k, n in enumerate(layers) if "(Linear)" not in n), len(layers))  # top FC layers
    lines = []
    for n, r in meths.items():
        after_head = r["sanity"][head - 1] if head > 0 else float("nan")
        lines.append(f"- {_label(n)}: rho = {_f(after_head, '.2f')} once the {head} fully connected layer(s) are "
                     f"randomized, {_f(r['sanity'][-1], '.2f')} once all {len(layers)} layers are.")
    blind = [_label(n) for n, r in meths.items() if head > 0 and math.isfinite(r["sanity"][head - 1])
             and r["sanity"][head - 1] > 0.9]
    text += "\n\n" + "\n".join(lines)
    if blind:
        text += ("\n\nMaps that stay (almost) the same (rho > 0.9) while the layers that compute the output from the "
                 "features are destroyed do not depend on those layers: " + ", ".join(blind) + ".")
    return text


def markdown(results: dict[str, Any], plot_paths: dict[str, Path]) -> str:
    """The report text."""
    m, p = results["meta"], results["meta"]["perturb"]
    img = {k: f"![{k}]({v.name})" for k, v in plot_paths.items()}
    parts = [
        "# What does the network look at? Attribution methods compared",
        f"- checkpoint `{m.get('checkpoint', '?')}`, data `{m.get('data', '?')}`: {len(m['frames'])} frames",
        f"- device {m['device']}, {m['threads']} torch threads, batch {m['batch']}, seed {m['seed']}"
        + (f", {m['date']}" if m.get("date") else ""),
        "- Timings are wall-clock measurements from this one run (same model, frames, batch, threads and "
        "device for every method); on a shared CPU they are noisy. Everything else is reproducible for the seed.",
        "\n## Speed\n\n" + _speed(results),
        (f"\n## Region perturbation, deletion and insertion\n\nRegions of {p['patch']}x{p['patch']} pixels ranked "
         f"by summed relevance, the top {100 * p['region_fraction']:.0f} % replaced by {_FILL_TEXT[_fill(p)]} "
         f"in {p['steps']} "
         "steps; AOPC = mean |change of the predicted angle| over the steps (degrees of steering wheel angle). "
         "Deletion/insertion: pixels ranked by relevance, replaced by / restored from a blurred copy.\n\n"
         + _perturbation(results)),
        "\n" + " ".join(img[k] for k in ("region", "deletion", "insertion") if k in img),
        "\n## What the maps point at (synthetic ground truth)\n\n" + _mass(results),
        "\n## Agreement with VisualBackProp\n\n" + _agreement(results),
        ("\n## Sanity check: cascading randomization (Adebayo et al.)\n\nOn a copy of the model, Conv2d/Linear "
         "layers are re-initialized from the output down, cumulatively; Spearman rho between each method's maps "
         f"for the trained and the randomized model, mean over {m['sanity_frames']} frames.\n\n" + _sanity(results)
         + ("\n\n" + img["sanity"] if "sanity" in img else "")),
    ]
    if "example" in img:
        parts.append("\n## Example frame\n\n" + img["example"])
    return "\n".join(parts) + "\n"


def write_report(results: dict[str, Any], maps: dict[str, np.ndarray], samples: Sequence[Sample], crop: CropSpec,
                 out_dir: str | Path) -> list[Path]:
    """Write plots, an example figure, ``results.json`` and ``report.md`` into ``out_dir``."""
    out = Path(out_dir)
    paths = plots(results, out)
    if samples and maps:
        pred = np.array([results["predicted_rad"][0]])
        fig = explain_figure(samples[0], crop, {n: m[0] for n, m in maps.items()}, pred,
                             {n: r["ms_per_frame"] for n, r in results["methods"].items()}, panel_width=400)
        paths["example"] = write_png(out / "example.png", fig)
    write_text_atomic(out / "results.json", json.dumps(results, indent=1, default=float))
    write_text_atomic(out / "report.md", markdown(results, paths))
    return [out / "report.md", out / "results.json", *paths.values()]
