"""The model step: crop/grayscale/resize as trained, then forward + VisualBackProp in one pass.

:class:`OverlayEngine` turns a batch of frames into steering predictions and input-sized masks.
The crop comes from the checkpoint (the one :func:`~vbp_live.core.preprocess.preprocess_frame`),
the attribution method is ``vbp_fused`` on CUDA where registered and runnable, else ``vbp``;
either way ``run(x)`` returns the output and the mask of the same forward pass.
"""

from __future__ import annotations

import copy
import logging
import os
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from vbp_live.attribution import create_method, list_methods
from vbp_live.attribution.ones_kernel import minmax_normalize
from vbp_live.core.errors import InputError, ModelError
from vbp_live.core.preprocess import CropSpec, preprocess_frame
from vbp_live.models import frames_to_input
from vbp_live.models.device import pick_device
from vbp_live.models.fold import inference_copy

log = logging.getLogger(__name__)


@dataclass
class Prediction:
    """The model step's result for one frame.

    Attributes:
        steering_rad: predicted steering wheel angle (rad).
        mask: float32 (out_height, out_width) VisualBackProp mask in [0, 1], on the network input grid.
        mask_range: (min, max) of the mask before its per-frame min-max: ``min + mask * (max - min)``
            is the raw mask, whose scale the overlay keeps across frames.
    """

    steering_rad: float
    mask: np.ndarray
    mask_range: tuple[float, float] = (0.0, 1.0)


def usable_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def configure_threads(device: torch.device, threads: int | None = None) -> int:
    """Set torch's CPU threads for the model step; returns the number used.

    The default leaves one core to the reader and writer threads (decode, render, encode): on
    a 2-core machine the model step gets 1 thread. Two OpenMP threads that spin while waiting
    would otherwise compete with decoding and encoding for the same two cores (measured: the
    model step alone ran ~20x slower with 2 threads than with 1 on a busy 2-core machine).
    On CUDA the CPU threads hardly matter and are left alone unless asked for.
    """
    if threads is None and device.type == "cuda":
        return torch.get_num_threads()
    n = threads if threads is not None else max(1, usable_cores() - 1)
    torch.set_num_threads(n)
    return n


def default_batch(device: torch.device) -> int:
    """Most frames per model step: 2 on CPU (per-frame cost is flat from 1 to 4 and grows at 8,
    where the activations no longer fit the caches), 16 on CUDA (batching is what a GPU needs)."""
    return 16 if device.type == "cuda" else 2


def pick_method(device: torch.device, requested: str = "auto") -> str:
    """The attribution method to use: ``vbp_fused`` on CUDA when it is registered and runnable."""
    if requested != "auto":
        return requested
    if device.type != "cuda" or "vbp_fused" not in list_methods():
        return "vbp"
    from vbp_live.attribution.vbp_triton import fused_available

    ok, why = fused_available(device)
    if not ok:
        log.warning("fused VisualBackProp unavailable (%s); using 'vbp'", why)
    return "vbp_fused" if ok else "vbp"


class OverlayEngine:
    """Batched inference + VisualBackProp for frames from any source.

    Args:
        model: a steering network (one output per frame). The engine works on its own copy:
            the given model keeps its device, train/eval mode, parameters and hooks.
        crop: the preprocessing it was trained with.
        device: where to run.
        method: "auto", "vbp" or "vbp_fused".
        channels_last: use the channels-last memory format (faster convolutions on CPU).
        optimize: run an inference copy (BatchNorm folded into the adjacent convs, in-place
            ReLUs after convs): same outputs and masks up to float rounding, less work per frame.
        positive_maps: average the positive part of signed activations (ELU, LeakyReLU, ...), whose
            maps as they are cancel out into a nearly uniform band; ReLU nets are unaffected.
    """

    def __init__(
        self,
        model: nn.Module,
        crop: CropSpec,
        device: torch.device | str = "cpu",
        method: str = "auto",
        channels_last: bool = True,
        optimize: bool = True,
        positive_maps: bool = True,
    ):
        self.device = pick_device(device) if isinstance(device, str) else device
        self.crop, self.channels_last = crop, channels_last
        if optimize:
            self.model, counts = inference_copy(model)  # a copy: the caller's model is left as it was
            log.debug("inference copy: %s", counts)
        else:
            self.model = copy.deepcopy(model)  # never move, switch or hook the caller's model
        self.model = self.model.to(self.device).eval()
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.checkpoint_meta: dict = {}
        self.model_name: str = getattr(model, "model_name", type(model).__name__)
        self.method_name = pick_method(self.device, method)
        self.method = create_method(self.method_name, self.model, positive=positive_maps)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike[str], device: str = "auto", trust_pickle: bool = False,
                        **kwargs: object) -> OverlayEngine:
        """Rebuild the model and its crop from a checkpoint or a model card alone."""
        from vbp_live.io.model_card import open_model

        ckpt = open_model(path, trust_pickle)
        dev = pick_device(device)
        engine = cls(ckpt.build_model(dev), ckpt.crop, dev, **kwargs)
        engine.checkpoint_meta = ckpt.meta
        engine.model_name = ckpt.model_name
        return engine

    def network_input(self, image: np.ndarray, cropped: bool = False) -> np.ndarray:
        """One frame as the network's uint8 input: preprocessed, or checked when already cropped."""
        if not cropped:
            return preprocess_frame(image, self.crop)
        want = (self.crop.out_height, self.crop.out_width)
        if image.shape[:2] != want:
            raise InputError(f"a cropped frame is {image.shape[:2]}, but the model expects {want}")
        if self.crop.grayscale and image.ndim == 3:
            return preprocess_frame(image, CropSpec(0.0, 1.0, *want))
        if not self.crop.grayscale and image.ndim == 2:
            raise InputError(f"a cropped frame is gray, but the model takes {self.crop.color} (3 channels)")
        return image

    def infer(self, images: list[np.ndarray], cropped: list[bool] | None = None) -> list[Prediction]:
        """Predictions for a batch of frames (any sizes; each is preprocessed on its own).

        Args:
            images: uint8 (H, W, 3) BGR or (H, W) gray frames.
            cropped: per frame, whether it already is the network input.
        """
        cropped = cropped or [False] * len(images)
        batch = np.stack([self.network_input(im, c) for im, c in zip(images, cropped, strict=True)])  # (B, h, w[, 3])
        x = frames_to_input(batch, self.device, self.crop)  # (B, C, h, w)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            res = self.method.run(x, raw=True)
            raw = res.mask.flatten(1)  # (B, h*w)
            lo, hi = raw.amin(1), raw.amax(1)  # (B,), (B,)
            mask = minmax_normalize(res.mask)  # (B, 1, h, w)
        out = res.output.reshape(len(images), -1)  # (B, n_out)
        if out.shape[1] != 1:
            raise ModelError(
                f"vbp-live run shows steering: the model must output 1 value per frame, got {out.shape[1]}"
            )
        steer = out[:, 0].float().cpu().numpy()  # (B,)
        masks = mask[:, 0].float().cpu().numpy()  # (B, h, w)
        ranges = torch.stack([lo, hi], 1).float().cpu().tolist()  # (B, 2)
        return [Prediction(float(s), m, (r[0], r[1])) for s, m, r in zip(steer, masks, ranges, strict=True)]
