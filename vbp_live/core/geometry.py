"""Convolution geometry per axis: output sizes and the transposed conv that inverts them.

All functions take one axis at a time (kernel ``k``, stride ``s``, padding ``p``, dilation ``d``).
"""

from __future__ import annotations

from dataclasses import dataclass


def conv_out_size(n: int, k: int, s: int = 1, p: int = 0, d: int = 1, ceil_mode: bool = False) -> int:
    """Output length of a convolution/pooling along one axis (PyTorch's formula)."""
    span = n + 2 * p - d * (k - 1) - 1
    if span < 0:
        raise ValueError(f"kernel {k} (dilation {d}) does not fit an axis of {n} with padding {p}")
    if ceil_mode:
        out = -(-span // s) + 1
        if (out - 1) * s >= n + p:  # last window must start inside the input or left padding
            out -= 1
        return out
    return span // s + 1


def transposed_full_size(n: int, k: int, s: int = 1, d: int = 1) -> int:
    """Length of a transposed conv's output before padding is cropped: ``(n-1)s + d(k-1) + 1``."""
    return (n - 1) * s + d * (k - 1) + 1


def output_padding(target: int, n: int, k: int, s: int = 1, p: int = 0, d: int = 1) -> int:
    """``output_padding`` that makes a transposed conv of an ``n``-long axis land on ``target``.

    Computed from the sizes actually seen, never guessed: ``target + 2p - ((n-1)s + d(k-1) + 1)``.
    It equals ``(target + 2p - d(k-1) - 1) mod s`` whenever ``n`` is the forward output size.
    Negative values (seen after ``ceil_mode`` pooling) mean the result must be cropped.
    """
    return target + 2 * p - transposed_full_size(n, k, s, d)


@dataclass(frozen=True)
class Geometry2d:
    """Kernel geometry of one spatial op (conv or pooling), as (height, width) pairs."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    ceil_mode: bool = False

    def out_size(self, h: int, w: int) -> tuple[int, int]:
        """Forward output size for an ``h``×``w`` input."""
        return (
            conv_out_size(h, self.kernel[0], self.stride[0], self.padding[0], self.dilation[0], self.ceil_mode),
            conv_out_size(w, self.kernel[1], self.stride[1], self.padding[1], self.dilation[1], self.ceil_mode),
        )

    def output_padding(self, target: tuple[int, int], n: tuple[int, int]) -> tuple[int, int]:
        """Per-axis output_padding for the ones-kernel transposed op from ``n`` back to ``target``."""
        return (
            output_padding(target[0], n[0], self.kernel[0], self.stride[0], self.padding[0], self.dilation[0]),
            output_padding(target[1], n[1], self.kernel[1], self.stride[1], self.padding[1], self.dilation[1]),
        )


def pair(v: int | tuple[int, ...] | list[int]) -> tuple[int, int]:
    """Normalize an int or 1/2-sequence to an (h, w) pair."""
    if isinstance(v, int):
        return (v, v)
    t = tuple(int(x) for x in v)
    if len(t) == 1:
        return (t[0], t[0])
    if len(t) != 2:
        raise ValueError(f"expected an int or a pair, got {v!r}")
    return (t[0], t[1])
