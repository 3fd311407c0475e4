"""VisualBackProp snapshots of fixed validation frames during training (the paper's Figure 5).

At each requested (fractional) epoch the current weights are copied into a separate eval-mode
copy of the network and :class:`~vbp_live.attribution.VisualBackProp` runs on that copy, so the
training model is never touched: its mode, hooks, buffers, RNG state and the batch order stay
exactly as they were. Masks are kept in ``snapshots/masks.npz`` (so a resumed run keeps the
earlier ones) and each frame gets a PNG strip: the input, the masks over time, and the input with
the latest mask overlaid in red.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import torch

from vbp_live.attribution import VisualBackProp
from vbp_live.core.overlay import overlay_mask, to_bgr
from vbp_live.io.atomic import atomic_path
from vbp_live.models import create_model, frames_to_input
from vbp_live.train.callbacks import Callback

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
    if frame.shape[1] >= 2 * frame.shape[0]:
        return np.concatenate(panels, axis=0)
    gap = np.full((panels[0].shape[0], 4, 3), 255, np.uint8)
    return np.concatenate([p for q in panels for p in (q, gap)][:-1], axis=1)


class VBPSnapshots(Callback):
    """Take VisualBackProp masks of fixed validation rows at given epochs and write PNG strips.

    Args:
        out_dir: where ``masks.npz`` and ``strip_<row>.png`` go.
        rows: dataset rows of the fixed frames.
        epochs: (fractional) epochs at which to take a snapshot.
    """

    def __init__(self, out_dir: str | Path, rows: np.ndarray, epochs: Sequence[float]):
        self.out_dir, self.rows, self.epochs = Path(out_dir), np.asarray(rows), list(epochs)
        self.schedule: dict[int, float] = {}
        self.taken: dict[float, np.ndarray] = {}  # epoch -> (K, H, W) float16
        self._shadow: torch.nn.Module | None = None
        self._vbp: VisualBackProp | None = None

    def before_train(self, trainer: Trainer) -> None:
        """Compute the step schedule, reload masks of a resumed run, take an epoch-0 snapshot if asked."""
        self.schedule = snapshot_steps(self.epochs, trainer.steps_per_epoch, trainer.total_steps)
        self.taken = self._load() if trainer.global_step > 0 else {}
        self.taken = {e: m for e, m in self.taken.items() if e * trainer.steps_per_epoch <= trainer.global_step + 0.5}
        if trainer.global_step == 0 and 0 in self.schedule:
            self.take(trainer, self.schedule[0])

    def after_step(self, trainer: Trainer) -> None:
        """Take a snapshot when the schedule says so."""
        if trainer.global_step in self.schedule:
            self.take(trainer, self.schedule[trainer.global_step])

    def take(self, trainer: Trainer, epoch: float) -> None:
        """Masks for the fixed rows with the current weights (on a separate eval copy)."""
        vbp = self._shadow_vbp(trainer)
        rows = np.asarray(trainer.data.frames[self.rows])  # (K, H, W[, C]) uint8
        x = frames_to_input(rows, trainer.device, trainer.data.crop)  # (K, C, H, W)
        with torch.no_grad():
            mask = vbp.attribute(x)  # (K, 1, H, W)
        self.taken[epoch] = mask[:, 0].float().cpu().numpy().astype(np.float16)
        self._save()
        self.write_strips(trainer.data.frames)
        log.info("VBP snapshot at epoch %g (step %d): %d frames", epoch, trainer.global_step, len(self.rows))

    def _shadow_vbp(self, trainer: Trainer) -> VisualBackProp:
        """VisualBackProp on an eval-mode copy of the network holding the current weights."""
        raw = trainer.raw_model
        if self._shadow is None or self._vbp is None:
            cuda = [trainer.device.index or 0] if trainer.device.type == "cuda" else []
            with torch.random.fork_rng(devices=cuda):  # building the copy must not consume the RNG
                self._shadow = create_model(raw.model_name, **raw.model_args).to(trainer.device).eval()
            self._vbp = VisualBackProp(self._shadow)
        self._shadow.load_state_dict(raw.state_dict())
        return self._vbp

    def write_strips(self, frames: np.ndarray) -> list[Path]:
        """One PNG strip per fixed frame, from the masks taken so far."""
        order = sorted(self.taken)
        paths = []
        for k, row in enumerate(self.rows):
            strip = render_strip(np.asarray(frames[row]), [self.taken[e][k].astype(np.float32) for e in order],
                                 [f"epoch {e:g}" for e in order])
            path = self.out_dir / f"strip_{int(row):06d}.png"
            with atomic_path(path) as tmp:
                if not cv2.imwrite(str(tmp), strip):
                    raise OSError(f"{path}: could not write PNG")
            paths.append(path)
        return paths

    def _save(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        arrays = {f"epoch_{e!r}": m for e, m in self.taken.items()}
        with atomic_path(self.out_dir / "masks.npz") as tmp, open(tmp, "wb") as f:
            np.savez_compressed(f, rows=self.rows, **arrays)

    def _load(self) -> dict[float, np.ndarray]:
        path = self.out_dir / "masks.npz"
        if not path.is_file():
            return {}
        with np.load(path, allow_pickle=False) as z:
            if not np.array_equal(z["rows"], self.rows):
                log.warning("%s: snapshot rows differ from this run's; earlier masks dropped", path)
                return {}
            return {float(k[len("epoch_"):]): z[k] for k in z.files if k.startswith("epoch_")}
