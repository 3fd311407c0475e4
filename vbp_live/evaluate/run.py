"""The evaluation run behind ``vbp-live evaluate``: every method on the same frames, model, device
and threads, in one run; results are plain data (JSON-able) for :mod:`.report`.

Per method: ms/frame; region perturbation (MoRF) curve and AOPC; deletion and insertion curves
and AUCs (:mod:`.perturb`); on synthetic drives, the relevance mass on lane markings,
horizontal markings, shadows and cars relative to their area; Spearman ρ and top-k IoU
against VisualBackProp's maps; and the cascading randomization sanity check (:mod:`.sanity`).

Timings: every method and the forward pass alone are timed round-robin, batch by batch, in
the same loop (after one untimed warm-up call each), so drifting machine load hits all alike.

Reproducible for a seed (frame noise, tie-breaks, random reference, randomized weights; the
timings are measurements, not reproducible). Each method's maps and then its finished results
are cached under ``<out>/cache`` with a fingerprint of the inputs and settings, so an
interrupted run resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vbp_live.attribution import Attribution
from vbp_live.core.metrics import aopc, curve_auc, mass_fraction, mass_ratio, spearman, topk_iou
from vbp_live.core.preprocess import CropSpec
from vbp_live.evaluate.figures import batches, build_methods, samples_to_input
from vbp_live.evaluate.inputs import GT_MASKS, Sample
from vbp_live.evaluate.perturb import (
    FrameContext,
    PerturbSettings,
    deletion_insertion,
    explained_outputs,
    frame_context,
    region_perturbation,
)
from vbp_live.evaluate.sanity import cascading_randomization, finite_mean, weighted_layers
from vbp_live.io.atomic import atomic_path, write_text_atomic

log = logging.getLogger(__name__)
Progress = Callable[..., Any]


@dataclass
class EvalConfig:
    """What to evaluate and how (see the CLI's ``--help`` for each field)."""

    methods: list[str]
    batch: int = 8
    seed: int = 0
    perturb: PerturbSettings = field(default_factory=PerturbSettings)
    sanity_frames: int = 4
    agreement_fractions: tuple[float, ...] = (0.05, 0.10)
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    device: str = "cpu"


class ResultCache:
    """Finished per-method results (JSON + maps .npy) under ``dir``, valid for one fingerprint."""

    def __init__(self, directory: Path, fingerprint: str):
        self.dir, self.fingerprint = Path(directory), fingerprint

    def get(self, name: str) -> tuple[dict[str, Any], np.ndarray] | None:
        """The cached result and maps of ``name`` if they belong to this fingerprint."""
        j, m = self.dir / f"{name}.json", self.dir / f"{name}.npy"
        if not (j.is_file() and m.is_file()):
            return None
        data = json.loads(j.read_text(encoding="utf-8"))
        if data.get("fingerprint") != self.fingerprint:
            return None
        return data["result"], np.load(m, allow_pickle=False)

    def put(self, name: str, result: dict[str, Any], maps: np.ndarray) -> None:
        """Store atomically (maps first, so a JSON never points to missing maps)."""
        with atomic_path(self.dir / f"{name}.npy") as tmp:
            np.save(tmp, maps, allow_pickle=False)
        write_text_atomic(self.dir / f"{name}.json", json.dumps({"fingerprint": self.fingerprint, "result": result}))


def fingerprint(checkpoint: Path, samples: Sequence[Sample], cfg: EvalConfig) -> str:
    """Hash of the checkpoint bytes, the frames and the settings (not the device)."""
    h = hashlib.sha1(Path(checkpoint).read_bytes())
    for s in samples:
        h.update(s.name.encode())
        h.update(np.ascontiguousarray(s.net_input).tobytes())
    settings = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("device", "methods")}
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return h.hexdigest()


def time_forward(model: nn.Module, x: torch.Tensor, batch: int) -> float:
    """ms/frame of the forward pass alone (after one warm-up batch)."""
    with torch.no_grad():
        model(x[:batch])
        t0 = time.perf_counter()
        for sl in batches(len(x), batch):
            model(x[sl])
        if x.is_cuda:
            torch.cuda.synchronize()
    return 1000.0 * (time.perf_counter() - t0) / len(x)


def curves(model: nn.Module, contexts: Sequence[FrameContext], maps: np.ndarray, s: PerturbSettings) -> dict[str, Any]:
    """Region perturbation, deletion and insertion for every frame; mean curves and summary numbers."""
    reg, dele, ins = [], [], []
    for ctx, m in zip(contexts, maps, strict=True):
        reg.append(region_perturbation(model, ctx, m, s))
        d, i = deletion_insertion(model, ctx, m, s)
        dele.append(d)
        ins.append(i)
    reg_a, del_a, ins_a = np.array(reg), np.array(dele), np.array(ins)
    return {
        "region_curve": reg_a.mean(0).tolist(), "aopc": aopc(reg_a), "aopc_per_frame": reg_a.mean(1).tolist(),
        "deletion_curve": del_a.mean(0).tolist(), "deletion_auc": float(np.mean([curve_auc(c) for c in del_a])),
        "insertion_curve": ins_a.mean(0).tolist(), "insertion_auc": float(np.mean([curve_auc(c) for c in ins_a])),
    }


def mass_on_masks(maps: np.ndarray, samples: Sequence[Sample]) -> dict[str, dict[str, float]]:
    """Mean relevance share and share/area ratio per ground-truth class (frames where the class is visible)."""
    out = {}
    for k in GT_MASKS:
        pairs = [(m, s.masks[k]) for m, s in zip(maps, samples, strict=True) if k in s.masks and s.masks[k].any()]
        if pairs:
            out[k] = {"share": finite_mean([mass_fraction(m, g) for m, g in pairs]),
                      "ratio": finite_mean([mass_ratio(m, g) for m, g in pairs]), "frames": len(pairs)}
    return out


def agreement(a: np.ndarray, b: np.ndarray, fractions: Sequence[float]) -> dict[str, float]:
    """Mean (and std) Spearman ρ and mean top-k IoU between two stacks of maps (N, H, W)."""
    rho = [spearman(x, y) for x, y in zip(a, b, strict=True)]
    finite = np.asarray(rho)[np.isfinite(rho)]
    out = {"spearman": finite_mean(rho), "spearman_std": float(finite.std()) if finite.size else float("nan")}
    for f in fractions:
        out[f"iou_top{round(100 * f)}"] = finite_mean([topk_iou(x, y, f) for x, y in zip(a, b, strict=True)])
    return out


def timed_maps(methods: dict[str, Attribution], model: nn.Module, x: torch.Tensor, batch: int,
               progress: Progress | None = None) -> tuple[dict[str, np.ndarray], dict[str, float], float]:
    """Every method's maps, timed round-robin per batch (with the forward pass alone) so load drift hits all alike.

    Returns the maps (N, H, W) per method, ms/frame per method and ms/frame of the forward pass.
    """
    for m in methods.values():
        if not hasattr(m, "fit"):  # untimed warm-up: tracing, LRP planning (PDA: too costly, skipped)
            m.attribute(x[:1])
    parts: dict[str, list[torch.Tensor]] = {n: [] for n in methods}
    secs = dict.fromkeys([*methods, "forward"], 0.0)
    bar = progress(total=len(x), desc="maps (all methods)", unit="frame") if progress else None
    for sl in batches(len(x), batch):
        t0 = time.perf_counter()
        with torch.no_grad():
            model(x[sl])
        _sync(x)
        secs["forward"] += time.perf_counter() - t0
        for n, m in methods.items():
            t0 = time.perf_counter()
            parts[n].append(m.attribute(x[sl])[:, 0].float().cpu())
            secs[n] += time.perf_counter() - t0
        if bar is not None:
            bar.update(sl.stop - sl.start)
    if bar is not None:
        bar.close()
    ms = {n: 1000.0 * v / len(x) for n, v in secs.items()}
    return {n: torch.cat(p).numpy() for n, p in parts.items()}, ms, ms.pop("forward")


def _sync(x: torch.Tensor) -> None:
    if x.is_cuda:
        torch.cuda.synchronize()


def measure_method(name: str, model: nn.Module, x: torch.Tensor, maps: np.ndarray, samples: Sequence[Sample],
                   contexts: Sequence[FrameContext], cfg: EvalConfig, progress: Progress | None) -> dict[str, Any]:
    """Curves, ground-truth mass and the sanity check of one method, from its maps (N, H, W)."""
    result: dict[str, Any] = curves(model, contexts, maps, cfg.perturb)
    result["mass"] = mass_on_masks(maps, samples)
    k = min(cfg.sanity_frames, len(x))
    if k > 0:
        bar = progress(total=len(weighted_layers(model)), desc=f"{name}: sanity", unit="layer") if progress else None
        layers, rhos = cascading_randomization(model, [name], x[:k], {name: maps[:k]}, cfg.seed, cfg.batch, cfg.options,
                                               (lambda _: bar.update(1)) if bar is not None else None, fit_images=x)
        if bar is not None:
            bar.close()
        result["sanity_layers"], result["sanity"] = layers, rhos[name]
    return result


def _maps_and_timings(model: nn.Module, x: torch.Tensor, cfg: EvalConfig, cache: ResultCache | None,
                      progress: Progress | None) -> tuple[dict[str, tuple[dict[str, Any], np.ndarray]], float]:
    """Per method (result so far, maps): from the cache, or computed now (and cached before going on)."""
    done = {n: hit for n in cfg.methods if cache and (hit := cache.get(n)) is not None}
    todo = [n for n in cfg.methods if n not in done]
    for n, (res, _) in done.items():
        res["cached"] = True  # its timing comes from an earlier run
        log.info("%s: resumed from the cache", n)
    if not todo:
        return done, time_forward(model, x, cfg.batch)
    methods = build_methods(model, todo, cfg.options, fit_images=x)
    new, ms, forward_ms = timed_maps(methods, model, x, cfg.batch, progress)
    for n in todo:
        done[n] = ({"ms_per_frame": ms[n], "partial": True}, new[n])
        if cache:
            cache.put(n, *done[n])
    return done, forward_ms


def evaluate(samples: Sequence[Sample], model: nn.Module, cfg: EvalConfig, cache: ResultCache | None = None,
             progress: Progress | None = None, meta: dict[str, Any] | None = None,
             crop: CropSpec | None = None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Run the whole evaluation; returns the results as plain data (see :mod:`.report`) and the maps.

    ``crop``: the model's preprocessing (its input scaling); None: ``x / 255``.
    """
    x = samples_to_input(samples, cfg.device, crop)  # (N, C, H, W)
    contexts = [frame_context(model, x[i], cfg.seed * 100_003 + i, cfg.perturb) for i in range(len(x))]
    stage, forward_ms = _maps_and_timings(model, x, cfg, cache, progress)
    results: dict[str, Any] = {
        "meta": {**(meta or {}), "frames": [s.name for s in samples], "seed": cfg.seed, "batch": cfg.batch,
                 "device": cfg.device, "threads": torch.get_num_threads(), "perturb": dataclasses.asdict(cfg.perturb),
                 "sanity_frames": min(cfg.sanity_frames, len(x))},
        "predicted_rad": explained_outputs(model, x, cfg.batch).tolist(), "truth_rad": [s.truth_rad for s in samples],
        "forward_ms": forward_ms,
        "random": curves(model, contexts, np.stack([c.random_map for c in contexts]), cfg.perturb),
        "area_share": {k: finite_mean([s.masks[k].mean() for s in samples if k in s.masks and s.masks[k].any()])
                       for k in GT_MASKS if any(k in s.masks for s in samples)},
        "methods": {},
    }
    maps: dict[str, np.ndarray] = {}
    for name in cfg.methods:
        res, maps[name] = stage[name]
        if res.pop("partial", False):
            res.update(measure_method(name, model, x, maps[name], samples, contexts, cfg, progress))
            if cache:
                cache.put(name, res, maps[name])
        results["methods"][name] = res
    results["agreement"] = agreement_table(maps, cfg.agreement_fractions)
    return results, maps


def agreement_table(maps: dict[str, np.ndarray], fractions: Sequence[float]) -> dict[str, dict[str, float]]:
    """VisualBackProp against every other method (and ε-LRP's |R| too, since the paper shows magnitudes)."""
    if "vbp" not in maps:
        return {}
    table = {n: agreement(maps["vbp"], m, fractions) for n, m in maps.items() if n != "vbp"}
    if "lrp" in maps:
        table["lrp |R|"] = agreement(maps["vbp"], np.abs(maps["lrp"]), fractions)
    return table
