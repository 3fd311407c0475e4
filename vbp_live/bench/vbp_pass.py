"""VisualBackProp variants for the benchmark: fused + CUDA graphs, the pass alone, target notes."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from vbp_live.attribution import FusedVisualBackProp, VisualBackProp
from vbp_live.attribution.ones_kernel import minmax_normalize
from vbp_live.attribution.vbp import backprop_masks, channel_mean
from vbp_live.attribution.vbp_triton import fused_available, fused_backprop, load_kernels
from vbp_live.bench.peers import PEERS

Fn = Callable[[], object]
VBP_FULL = ("vbp", "vbp_fused", "vbp (CUDA graph)", "vbp_fused (CUDA graph)")
PASS_ALONE = ("vbp pass alone", "vbp_fused pass alone")


def fused_and_graphs(model: nn.Module, x: torch.Tensor, skipped: dict[str, str]) -> dict[str, Fn]:
    """Fused VBP and CUDA-graph rows (CUDA only; the reasons go to ``skipped`` elsewhere)."""
    ok, why = fused_available(x.device)
    if x.device.type != "cuda":
        skipped["vbp_fused"] = why or (
            "Triton kernels are timed on CUDA only (here they run only through Triton's interpreter, "
            "which is for tests)"
        )
        skipped["CUDA graph rows"] = "need a CUDA device"
        return {}
    from vbp_live.attribution.cuda_graph import graph_forward, graph_vbp

    g_fwd, g_vbp = graph_forward(model, x), graph_vbp(VisualBackProp(model), x)
    fns: dict[str, Fn] = {"forward (CUDA graph)": lambda: g_fwd(x), "vbp (CUDA graph)": lambda: g_vbp(x)}
    if not ok:
        skipped["vbp_fused"] = why
        return fns
    fused = FusedVisualBackProp(model)
    g_fused = graph_vbp(fused, x)
    fns["vbp_fused"] = lambda: fused.attribute(x)
    fns["vbp_fused (CUDA graph)"] = lambda: g_fused(x)
    fns["vbp_fused + copy to host"] = lambda: fused.attribute(x).cpu()  # (B, 1, H, W) on the host
    return fns


def pass_alone(model: nn.Module, x: torch.Tensor, skipped: dict[str, str]) -> dict[str, Fn]:
    """The work VBP adds to a forward pass, on maps captured once: channel reduction, upsample × map, min-max."""
    vbp = VisualBackProp(model)
    chain, in_hw = vbp.chain(x), tuple(x.shape[-2:])
    _, acts = vbp.forward_capture(x, lambda t: t.detach().clone())  # post-activation maps (B, C_k, h_k, w_k)

    def fast() -> torch.Tensor:  # the same reduction and pass as VisualBackProp, on captured maps
        return minmax_normalize(backprop_masks(chain, [channel_mean(a) for a in acts], in_hw)[0])

    fns: dict[str, Fn] = {"vbp pass alone": fast}
    if x.device.type == "cuda" and fused_available(x.device)[0]:
        kernels = load_kernels()

        def fused() -> torch.Tensor:
            maps = [kernels.channel_mean(a) for a in acts]  # (B, 1, h_k, w_k)
            return minmax_normalize(fused_backprop(kernels, chain, maps, in_hw)[0])

        fns["vbp_fused pass alone"] = fused
    return fns


def activation_bytes(model: nn.Module, x: torch.Tensor) -> int:
    """Bytes of the post-activation maps VisualBackProp reads for batch ``x``."""
    _, sizes = VisualBackProp(model).forward_capture(x, lambda t: t.numel() * t.element_size())
    return int(sum(sizes))


def _best(secs: dict[str, float], names) -> tuple[str, float] | None:
    have = [(k, secs[k]) for k in names if k in secs]
    return min(have, key=lambda kv: kv[1]) if have else None


def target_notes(
    name: str, b: int, secs: dict[str, float], act_bytes: int, bandwidth: float, dev: torch.device, lrp_ours: str,
    paired: dict[str, float] | None = None,
) -> list[str]:
    """One line per target for this (model, batch): overhead, memory bound, ε-LRP ratio."""
    tag, fwd, ms = f"{name} batch {b}", secs["forward"], lambda s: f"{1000 * s / b:.3f} ms/frame"
    pair = f", {paired['vbp']:.3f} × as the median of same-round ratios" if paired and "vbp" in paired else ""
    cpu_target = f" (CPU target ≤ {1.2 if b == 1 else 1.1:.2f})" if dev.type == "cpu" else ""
    notes = [f"{tag}: forward + VBP (fast) = {secs['vbp'] / fwd:.3f} × forward (fastest repeats){pair}{cpu_target}"]
    if "vbp_fused" in secs:
        notes.append(f"{tag}: forward + VBP (fused) = {secs['vbp_fused'] / fwd:.3f} × forward (GPU target ≤ 1.05)")
    if "forward (CUDA graph)" in secs:
        g = _best(secs, ("vbp_fused (CUDA graph)", "vbp (CUDA graph)"))
        e = _best(secs, ("vbp_fused", "vbp"))
        notes.append(
            f"{tag}: CUDA graph: forward + {g[0]} {ms(g[1])} vs {ms(e[1])} without the graph ({e[0]}); forward alone "
            f"{ms(secs['forward (CUDA graph)'])} with a graph → {g[1] / secs['forward (CUDA graph)']:.3f} × "
            "(GPU target ≤ 1.05)"
        )
    bound = act_bytes / bandwidth
    for row in PASS_ALONE:
        if row in secs:
            notes.append(
                f"{tag}: {row} {1000 * secs[row]:.3f} ms per batch for {act_bytes / 1e6:.1f} MB of post-activation "
                f"maps; memory bound {1000 * bound:.3f} ms at {bandwidth / 1e9:.1f} GB/s measured copy bandwidth "
                f"→ {secs[row] / bound:.2f}× the bound (GPU target ≤ 2× at batch 64)"
            )
    notes += _lrp_notes(tag, secs, lrp_ours, ms)
    return notes


def _lrp_notes(tag: str, secs: dict[str, float], lrp_ours: str, ms) -> list[str]:
    vbp, alone = _best(secs, VBP_FULL), _best(secs, PASS_ALONE)
    notes = []
    if lrp_ours in secs:
        notes.append(f"{tag}: our ε-LRP = {secs[lrp_ours] / vbp[1]:.1f} × forward + VBP ({vbp[0]})")
    peer = _best(secs, [k for k, (_, is_lrp) in PEERS.items() if is_lrp])
    if peer is None:
        return notes + [f"{tag}: no peer ε-LRP ran (reasons below), so the ≥ 50× target is not measured"]
    full, extra = peer[1] / vbp[1], peer[1] / alone[1]
    verdict = "met" if full >= 50 else ("met only against the VBP pass alone" if extra >= 50 else "not met")
    return notes + [
        f"{tag}: fastest peer ε-LRP {peer[0]} {ms(peer[1])} = {full:.1f}× forward + VBP ({vbp[0]}, {ms(vbp[1])}) "
        f"and {extra:.0f}× the VBP pass alone ({alone[0]}); target ≥ 50×: {verdict}"
    ]
