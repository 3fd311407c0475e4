"""VisualBackProp snapshots of fixed validation frames during training (the paper's Figure 5).

At each requested (fractional) epoch the current weights are copied into a separate eval-mode
copy of the network and :class:`~vbp_live.attribution.VisualBackProp` runs on that copy, so the
training model is never touched: its mode, hooks, buffers, RNG state and the batch order stay
exactly as they were. Masks are kept in ``snapshots/masks.npz`` (so a resumed run keeps the
earlier ones) and each frame gets a PNG strip: the input, the masks over time, and the input with
the latest mask overlaid in red. ``snapshots.mp4`` shows the fixed frames with each snapshot's
mask in turn (Figure 5, moving), and with TensorBoard each snapshot is also an image per frame.

:class:`VBPSnapshots` serves :class:`~vbp_live.train.loop.Trainer`; :class:`VBPSnapshot` does the
same for a training loop of your own (any module VisualBackProp can follow, any fixed frames).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import torch
from torch import nn

from vbp_live.attribution import VisualBackProp
from vbp_live.core.errors import InputError, UsageError
from vbp_live.core.overlay import overlay_mask, to_bgr
from vbp_live.io.atomic import atomic_path
from vbp_live.io.sinks import VideoFileSink
from vbp_live.models import create_model, frames_to_input
from vbp_live.train.callbacks import Callback, TensorBoard

if TYPE_CHECKING:
    from vbp_live.train.loop import Trainer

log = logging.getLogger(__name__)


def snapshot_steps(epochs: Sequence[float], steps_per_epoch: int, total_steps: int) -> dict[int, float]:
    """Global step at which each snapshot epoch falls (``round(e * steps_per_epoch)``, ≥ 1 for e > 0)."""
    out: dict[int, float] = {}
    for e in sorted(set(float(v) for v in epochs)):
        step = round(e * steps_per_epoch)
        step = max(step, 1) if e > 0 else 0
        if step <= total_steps:
            out.setdefault(step, e)
    return out


def pick_frames(val_idx: np.ndarray, count: int, explicit: Sequence[int]) -> np.ndarray:
    """The fixed snapshot rows: ``explicit`` if given, else ``count`` rows spread evenly over validation."""
    if explicit:
        return np.asarray(explicit, dtype=np.int64)
    count = min(count, len(val_idx))
    if not count:
        return np.zeros(0, int)
    return np.asarray(val_idx)[np.linspace(0, len(val_idx) - 1, count).round().astype(int)]


MIN_PANEL_WIDTH = 256  # small frames are enlarged (nearest) so titles and details stay readable
VIDEO_FPS = 2.0  # snapshots.mp4: each snapshot is shown for half a second


def _label(panel: np.ndarray, text: str) -> np.ndarray:
    """A panel (enlarged if narrow) with a black title band above it."""
    f = -(-MIN_PANEL_WIDTH // panel.shape[1])
    if f > 1:
        panel = cv2.resize(panel, (panel.shape[1] * f, panel.shape[0] * f), interpolation=cv2.INTER_NEAREST)
    band = np.zeros((18, panel.shape[1], 3), np.uint8)
    cv2.putText(band, text, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return np.concatenate([band, panel])


def render_strip(frame: np.ndarray, masks: Sequence[np.ndarray], labels: Sequence[str]) -> np.ndarray:
    """Input, each mask (gray), then the input with the last mask in red; stacked along the short side.

    Args:
        frame: uint8 (H, W) or (H, W, 3).
        masks: float (H, W) masks in [0, 1], oldest first.
        labels: one title per mask (e.g. ``epoch 0.5``).

    Returns:
        uint8 BGR image: vertical strip for wide frames, horizontal otherwise.
    """
    panels = [_label(to_bgr(frame), "input")]
    for m, text in zip(masks, labels, strict=True):
        gray = (np.clip(m, 0, 1) * 255 + 0.5).astype(np.uint8)  # (H, W)
        panels.append(_label(to_bgr(gray), text))
    if len(masks):
        panels.append(_label(overlay_mask(frame, masks[-1]), f"{labels[-1]}, overlay"))
    return _tile(panels, frame.shape[1] >= 2 * frame.shape[0])


def _tile(panels: list[np.ndarray], wide: bool) -> np.ndarray:
    """Panels of one size stacked along the frames' short side (white gaps between side-by-side ones)."""
    if wide:
        return np.concatenate(panels, axis=0)
    gap = np.full((panels[0].shape[0], 4, 3), 255, np.uint8)
    return np.concatenate([p for q in panels for p in (q, gap)][:-1], axis=1)


def render_movie_frame(frames: Sequence[np.ndarray], masks: np.ndarray, title: str) -> np.ndarray:
    """One frame of ``snapshots.mp4``: every fixed frame with one snapshot's mask in red, under ``title``.

    Args:
        frames: the fixed frames, uint8 (H, W) or (H, W, 3), all of one size.
        masks: (K, H, W) masks in [0, 1], one per frame.
        title: e.g. ``epoch 0.5``.
    """
    panels = [_label(overlay_mask(f, m.astype(np.float32)), f"frame {k}")
              for k, (f, m) in enumerate(zip(frames, masks, strict=True))]
    body = _tile(panels, frames[0].shape[1] >= 2 * frames[0].shape[0])
    band = np.zeros((30, body.shape[1], 3), np.uint8)
    cv2.putText(band, title, (6, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 1, cv2.LINE_AA)
    return np.concatenate([band, body])


def write_snapshot_video(path: Path, frames: Sequence[np.ndarray], taken: Sequence[tuple[str, np.ndarray]],
                         fps: float = VIDEO_FPS) -> Path | None:
    """``snapshots.mp4``: one video frame per snapshot, oldest first (the project's video writer, atomic)."""
    sink = VideoFileSink(path, fps)
    try:
        for i, (title, masks) in enumerate(taken):
            sink.write(render_movie_frame(frames, masks, title), i, i / fps)
    except BaseException:
        sink.abort()
        raise
    sink.close()
    return sink.finalized


class SnapshotFiles:
    """What a snapshot taker writes into ``out_dir``: masks.npz, strips, snapshots.mp4 and TensorBoard images.

    Args:
        out_dir: the folder.
        ids: one name per fixed frame (dataset rows, or 0..K-1), used in file names and image tags.
        prefix: what a snapshot's key counts (``epoch`` or ``step``).
        tensorboard: where snapshot images go too (None: nowhere).
        video: write ``snapshots.mp4``.
    """

    def __init__(self, out_dir: str | Path, ids: Sequence[int], prefix: str = "epoch",
                 tensorboard: TensorBoard | None = None, video: bool = True):
        self.out_dir, self.ids, self.prefix = Path(out_dir), [int(i) for i in ids], prefix
        self.tensorboard, self.video = tensorboard, video
        self.taken: dict[float, np.ndarray] = {}  # key -> (K, H, W) float16

    def label(self, key: float) -> str:
        """``epoch 0.5`` / ``step 200``."""
        return f"{self.prefix} {key:g}"

    def record(self, key: float, masks: np.ndarray, frames: Sequence[np.ndarray], step: int) -> None:
        """Keep one snapshot's masks (K, H, W) and rewrite every output; ``step`` is TensorBoard's step."""
        self.taken[key] = masks.astype(np.float16)
        self.save()
        self.write_strips(frames)
        if self.tensorboard is not None:
            for k, i in enumerate(self.ids):
                strip = render_strip(np.asarray(frames[k]), [masks[k].astype(np.float32)], [self.label(key)])
                self.tensorboard.add_image(f"vbp_snapshot/frame_{i:06d}", strip, step)
            self.tensorboard.flush()
        if self.video:
            order = sorted(self.taken)
            write_snapshot_video(self.out_dir / "snapshots.mp4", frames,
                                 [(self.label(e), self.taken[e]) for e in order])

    def write_strips(self, frames: Sequence[np.ndarray]) -> list[Path]:
        """One PNG strip per fixed frame (``frames[k]`` is frame ``ids[k]``) from the masks taken so far."""
        order = sorted(self.taken)
        paths = []
        for k, i in enumerate(self.ids):
            strip = render_strip(np.asarray(frames[k]), [self.taken[e][k].astype(np.float32) for e in order],
                                 [self.label(e) for e in order])
            path = self.out_dir / f"strip_{i:06d}.png"
            with atomic_path(path) as tmp:
                if not cv2.imwrite(str(tmp), strip):
                    raise OSError(f"{path}: could not write PNG")
            paths.append(path)
        return paths

    def save(self) -> None:
        """``masks.npz``: the ids and every snapshot's masks (``<prefix>_<key>``)."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        arrays = {f"{self.prefix}_{e!r}": m for e, m in self.taken.items()}
        with atomic_path(self.out_dir / "masks.npz") as tmp, open(tmp, "wb") as f:
            np.savez_compressed(f, rows=np.asarray(self.ids), **arrays)

    def load(self) -> dict[float, np.ndarray]:
        """The masks of an earlier (resumed) run with the same ids ({} otherwise)."""
        path = self.out_dir / "masks.npz"
        if not path.is_file():
            return {}
        with np.load(path, allow_pickle=False) as z:
            if not np.array_equal(z["rows"], np.asarray(self.ids)):
                log.warning("%s: snapshot rows differ from this run's; earlier masks dropped", path)
                return {}
            start = len(self.prefix) + 1
            return {float(k[start:]): z[k] for k in z.files if k.startswith(self.prefix + "_")}


class VBPSnapshots(Callback):
    """Take VisualBackProp masks of fixed validation rows at given epochs; write strips, video, TensorBoard images.

    Args:
        out_dir: where ``masks.npz``, ``strip_<row>.png`` and ``snapshots.mp4`` go.
        rows: dataset rows of the fixed frames.
        epochs: (fractional) epochs at which to take a snapshot.
        tensorboard: also log each snapshot there (one image per frame).
        video: write ``snapshots.mp4``.
    """

    def __init__(self, out_dir: str | Path, rows: np.ndarray, epochs: Sequence[float],
                 tensorboard: TensorBoard | None = None, video: bool = True):
        self.out_dir, self.rows, self.epochs = Path(out_dir), np.asarray(rows), list(epochs)
        self.files = SnapshotFiles(out_dir, self.rows, "epoch", tensorboard, video)
        self.schedule: dict[int, float] = {}
        self._shadow: nn.Module | None = None
        self._vbp: VisualBackProp | None = None

    @property
    def taken(self) -> dict[float, np.ndarray]:
        """Epoch -> (K, H, W) float16 masks taken so far."""
        return self.files.taken

    def before_train(self, trainer: Trainer) -> None:
        """Compute the step schedule, reload masks of a resumed run, take an epoch-0 snapshot if asked."""
        self.schedule = snapshot_steps(self.epochs, trainer.steps_per_epoch, trainer.total_steps)
        taken = self.files.load() if trainer.global_step > 0 else {}
        self.files.taken = {e: m for e, m in taken.items() if e * trainer.steps_per_epoch <= trainer.global_step + 0.5}
        if trainer.global_step == 0 and 0 in self.schedule:
            self.take(trainer, self.schedule[0])

    def after_step(self, trainer: Trainer) -> None:
        """Take a snapshot when the schedule says so."""
        if trainer.global_step in self.schedule:
            self.take(trainer, self.schedule[trainer.global_step])

    def take(self, trainer: Trainer, epoch: float) -> None:
        """Masks for the fixed rows with the current weights (on a separate eval copy)."""
        vbp = self._shadow_vbp(trainer)
        frames = np.asarray(trainer.data.frames[self.rows])  # (K, H, W[, C]) uint8
        x = frames_to_input(frames, trainer.device, trainer.data.crop)  # (K, C, H, W)
        with torch.no_grad():
            mask = vbp.attribute(x)  # (K, 1, H, W)
        self.files.record(epoch, mask[:, 0].float().cpu().numpy(), list(frames), trainer.global_step)
        log.info("VBP snapshot at epoch %g (step %d): %d frames", epoch, trainer.global_step, len(self.rows))

    def _shadow_vbp(self, trainer: Trainer) -> VisualBackProp:
        """VisualBackProp on an eval-mode copy of the network holding the current weights."""
        raw = trainer.raw_model
        if self._shadow is None or self._vbp is None:
            cuda = [trainer.device.index or 0] if trainer.device.type == "cuda" else []
            with torch.random.fork_rng(devices=cuda):  # building the copy must not consume the RNG
                self._shadow = create_model(raw.model_name, **raw.model_args).to(trainer.device).eval()
            self._vbp = VisualBackProp(self._shadow, positive=True)  # as run shows it (ELU nets)
        self._shadow.load_state_dict(raw.state_dict())
        return self._vbp

    def write_strips(self, frames: np.ndarray) -> list[Path]:
        """One PNG strip per fixed frame, from the masks taken so far (``frames``: the dataset's frames)."""
        return self.files.write_strips([np.asarray(frames[r]) for r in self.rows])


class VBPSnapshot(Callback):
    """VisualBackProp snapshots from your own training loop: the same strips, video and TensorBoard images.

    Training is not changed: the masks come from an eval-mode copy that receives the current
    weights, so the model's weights, gradients, mode, buffers and the RNG state stay as they were.

    Example::

        snap = VBPSnapshot(model, val_frames, every=200, out_dir="runs/mine/snapshots")
        for x, y in loader:
            loss = loss_fn(model(x), y)
            optimizer.zero_grad(); loss.backward(); optimizer.step()
            snap.step()                       # a snapshot every 200 steps
        snap.close()

    It is also a :class:`~vbp_live.train.loop.Trainer` callback (``after_step`` counts the trainer's steps).

    Args:
        model: the network being trained (a ``DistributedDataParallel`` wrapper is looked through).
        frames: the fixed frames: uint8 (K, H, W) or (K, H, W, 3) as the network sees them (like a prepared
            dataset's frames), or the network input itself, a float tensor (K, C, H, W).
        every: take a snapshot every this many steps.
        out_dir: where ``masks.npz``, ``strip_<k>.png`` and ``snapshots.mp4`` go.
        tensorboard: ``"auto"`` (TensorBoard images in ``out_dir/tensorboard`` when it is installed), True,
            False, or a :class:`~vbp_live.train.callbacks.TensorBoard` to share with your own logging.
        video: write ``snapshots.mp4``.
        at_start: take one now, before training (step 0).
    """

    def __init__(self, model: nn.Module, frames: np.ndarray | torch.Tensor, every: int = 100,
                 out_dir: str | Path = "snapshots", tensorboard: bool | str | TensorBoard = "auto", video: bool = True,
                 at_start: bool = True):
        if every < 1:
            raise UsageError(f"VBPSnapshot: every must be >= 1, got {every}")
        self.model, self.every = model, every
        self.x, self.frames = _input_and_display(frames)
        tb = tensorboard if isinstance(tensorboard, TensorBoard) else TensorBoard.from_setting(
            Path(out_dir) / "tensorboard", tensorboard)
        self._own_tb = tb if not isinstance(tensorboard, TensorBoard) else None
        self.files = SnapshotFiles(out_dir, range(len(self.frames)), "step", tb, video)
        self.steps = 0
        self._shadow: nn.Module | None = None
        self._vbp: VisualBackProp | None = None
        if at_start:
            self.take()

    def step(self, global_step: int | None = None) -> bool:
        """Count one optimizer step (or set the count); take a snapshot when it is due. True if one was taken."""
        self.steps = self.steps + 1 if global_step is None else int(global_step)
        if self.steps % self.every == 0 and float(self.steps) not in self.files.taken:
            self.take()
            return True
        return False

    def take(self) -> np.ndarray:
        """Masks (K, H, W) of the fixed frames with the current weights; every output is rewritten."""
        vbp = self._shadow_vbp()
        with torch.no_grad():
            mask = vbp.attribute(self.x.to(_device_of(self.model)))  # (K, 1, H, W)
        masks = mask[:, 0].float().cpu().numpy()  # (K, H, W)
        self.files.record(float(self.steps), masks, self.frames, self.steps)
        log.info("VBP snapshot at step %d: %d frames", self.steps, len(self.frames))
        return masks

    def _shadow_vbp(self) -> VisualBackProp:
        """VisualBackProp on an eval-mode copy holding the model's current weights and buffers."""
        raw = _unwrap(self.model)
        if self._shadow is None or self._vbp is None:
            dev = _device_of(raw)
            with torch.random.fork_rng(devices=[dev.index or 0] if dev.type == "cuda" else []):
                shadow = copy.deepcopy(raw)
            for p in shadow.parameters():
                p.grad = None
                p.requires_grad_(False)
            self._shadow, self._vbp = shadow.eval(), VisualBackProp(shadow, positive=True)
        self._shadow.load_state_dict(raw.state_dict())
        return self._vbp

    def before_train(self, trainer: Any) -> None:
        """As a trainer callback: count from the trainer's step (a resumed run's)."""
        self.steps = trainer.global_step

    def after_step(self, trainer: Any) -> None:
        """As a trainer callback: the trainer's step count."""
        self.step(trainer.global_step)

    def after_train(self, trainer: Any) -> None:
        """As a trainer callback: close."""
        self.close()

    def close(self) -> None:
        """Close the TensorBoard writer this object opened (outputs are already on disk)."""
        if self._own_tb is not None:
            self._own_tb.close()


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _device_of(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _input_and_display(frames: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, list[np.ndarray]]:
    """The network input (K, C, H, W) and uint8 images to draw on, from either kind of ``frames``."""
    if isinstance(frames, torch.Tensor) and frames.is_floating_point():
        x = frames.detach().float().cpu()  # (K, C, H, W)
        lo = x.amin(dim=(1, 2, 3), keepdim=True)
        hi = x.amax(dim=(1, 2, 3), keepdim=True)
        img = ((x - lo) / (hi - lo).clamp_min(1e-12) * 255 + 0.5).to(torch.uint8)  # (K, C, H, W)
        shown = img[:, 0] if img.shape[1] == 1 else img[:, :3].permute(0, 2, 3, 1)  # (K, H, W[, 3])
        return x.clone(), list(shown.numpy())
    arr = np.asarray(frames.cpu() if isinstance(frames, torch.Tensor) else frames)
    if arr.dtype != np.uint8 or arr.ndim not in (3, 4):
        raise InputError(f"VBPSnapshot: frames must be uint8 (K, H, W) or (K, H, W, C), or a float tensor "
                         f"(K, C, H, W); got {arr.dtype} {arr.shape}")
    return frames_to_input(arr), list(arr)
