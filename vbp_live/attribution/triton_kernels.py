"""Triton kernels of the fused VisualBackProp pass (imported lazily: Triton is optional).

Two kernels:

* :func:`channel_mean`: one read of a post-activation map ``(B, C, h, w)`` (any strides, any
  float dtype) into its float32 channel mean ``(B, 1, h, w)``. Called in the stage hook, while
  the activation was just written by the forward pass.
* :func:`ones_gather`: the ones-kernel transposed conv in *gather* form, fused with the product
  by the next shallower map. Along each axis, output ``y`` sums the deeper-mask positions ``i``
  whose receptive field covers it: ``y + p = i*s + j*d`` for some tap ``0 <= j < k``. Every
  output pixel is written exactly once (no atomics, no zero fill, no crop), for any kernel,
  stride, padding and dilation (non-square included) and any target size.

On CUDA tensors they run compiled. On CPU tensors they run only through Triton's interpreter,
which must be switched on with ``TRITON_INTERPRET=1`` *before* triton is first imported.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from vbp_live.core.geometry import Geometry2d

# Block sizes. The interpreter runs one Python step per program, so it gets few, large blocks.
GPU_MEAN_BLOCK_C, GPU_MEAN_BLOCK_HW, GPU_GATHER_BLOCK = 8, 512, 1024
CPU_MAX_BLOCK = 1 << 16


def interpreted() -> bool:
    """True when these kernels were built for Triton's interpreter (``TRITON_INTERPRET=1``)."""
    from triton.runtime.interpreter import InterpretedFunction

    return isinstance(_channel_mean_kernel, InterpretedFunction)


@triton.jit
def _channel_mean_kernel(
    x_ptr, out_ptr, C, HW, W, sxb, sxc, sxh, sxw, inv_c,
    BLOCK_C: tl.constexpr, BLOCK_HW: tl.constexpr,
):
    b = tl.program_id(0).to(tl.int64)
    hw = tl.program_id(1) * BLOCK_HW + tl.arange(0, BLOCK_HW)  # (BLOCK_HW,)
    hw_ok = hw < HW
    sp = (hw // W).to(tl.int64) * sxh + (hw % W).to(tl.int64) * sxw  # element offsets
    base = x_ptr + b * sxb
    acc = tl.zeros((BLOCK_HW,), dtype=tl.float32)
    for c0 in range(0, C, BLOCK_C):
        c = c0 + tl.arange(0, BLOCK_C)  # (BLOCK_C,)
        ptrs = base + c[:, None].to(tl.int64) * sxc + sp[None, :]  # (BLOCK_C, BLOCK_HW)
        v = tl.load(ptrs, mask=(c[:, None] < C) & hw_ok[None, :], other=0.0)
        acc += tl.sum(v.to(tl.float32), axis=0)
    tl.store(out_ptr + b * HW + hw, acc * inv_c, mask=hw_ok)


@triton.jit
def _ones_gather_kernel(
    m_ptr, map_ptr, out_ptr, HI, WI, HO, WO, SH, SW, PH, PW, DH, DW,
    KH: tl.constexpr, KW: tl.constexpr, HAS_MAP: tl.constexpr, BLOCK: tl.constexpr,
):
    b = tl.program_id(0).to(tl.int64)
    o = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)  # flat output pixel (BLOCK,)
    ok = o < HO * WO
    y = o // WO
    x = o % WO
    src = m_ptr + b * HI * WI
    acc = tl.zeros((BLOCK,), dtype=tl.float32)
    for jh in tl.static_range(KH):
        th = y + PH - jh * DH
        ih = th // SH
        vh = (th >= 0) & (th == ih * SH) & (ih < HI)
        for jw in tl.static_range(KW):
            tw = x + PW - jw * DW
            iw = tw // SW
            vw = (tw >= 0) & (tw == iw * SW) & (iw < WI)
            acc += tl.load(src + ih * WI + iw, mask=ok & vh & vw, other=0.0)
    if HAS_MAP:
        acc *= tl.load(map_ptr + b * HO * WO + o, mask=ok, other=0.0)
    tl.store(out_ptr + b * HO * WO + o, acc, mask=ok)


def _cpu_block(n: int, cap: int = CPU_MAX_BLOCK) -> int:
    return triton.next_power_of_2(max(1, min(n, cap)))


def channel_mean(t: torch.Tensor) -> torch.Tensor:
    """Float32 channel mean: (B, C, h, w) -> (B, 1, h, w), reading ``t`` once."""
    bsz, c, h, w = t.shape
    out = torch.empty(bsz, 1, h, w, device=t.device, dtype=torch.float32)  # (B, 1, h, w)
    if t.is_cuda and not interpreted():
        block_c, block_hw, warps = GPU_MEAN_BLOCK_C, GPU_MEAN_BLOCK_HW, 4
    else:
        block_c = _cpu_block(c, 128)
        block_hw, warps = _cpu_block(h * w, max(1, CPU_MAX_BLOCK // block_c)), 1
    grid = (bsz, triton.cdiv(h * w, block_hw))
    sb, sc, sh, sw = t.stride()
    _channel_mean_kernel[grid](
        t, out, c, h * w, w, sb, sc, sh, sw, 1.0 / c, BLOCK_C=block_c, BLOCK_HW=block_hw, num_warps=warps
    )
    return out


def ones_gather(
    mask: torch.Tensor, g: Geometry2d, target: tuple[int, int], multiply: torch.Tensor | None = None
) -> torch.Tensor:
    """All-ones transposed conv of geometry ``g`` from ``mask`` to ``target``, times ``multiply``.

    Args:
        mask: contiguous float32 (B, 1, h, w), the deeper mask.
        g: the forward op's kernel, stride, padding and dilation.
        target: (H, W) of the op's forward input (the size seen, so no output_padding needed).
        multiply: optional contiguous float32 (B, 1, H, W) map multiplied in the same pass.

    Returns:
        float32 (B, 1, H, W).
    """
    bsz, _, hi, wi = mask.shape
    ho, wo = target
    out = torch.empty(bsz, 1, ho, wo, device=mask.device, dtype=torch.float32)  # (B, 1, H, W)
    gpu = mask.is_cuda and not interpreted()
    block = GPU_GATHER_BLOCK if gpu else _cpu_block(ho * wo)
    grid = (bsz, triton.cdiv(ho * wo, block))
    _ones_gather_kernel[grid](
        mask, multiply if multiply is not None else mask, out, hi, wi, ho, wo,
        g.stride[0], g.stride[1], g.padding[0], g.padding[1], g.dilation[0], g.dilation[1],
        KH=g.kernel[0], KW=g.kernel[1], HAS_MAP=multiply is not None, BLOCK=block, num_warps=4 if gpu else 1,
    )
    return out
