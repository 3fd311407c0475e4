"""Layer 4: the live overlay pipeline (reader -> model step -> writer) and the engine behind it."""

from vbp_live.stream.engine import OverlayEngine, Prediction
from vbp_live.stream.pipeline import Pipeline, PipelineConfig
from vbp_live.stream.render import OverlayRenderer
from vbp_live.stream.stats import StreamStats

__all__ = ["OverlayEngine", "OverlayRenderer", "Pipeline", "PipelineConfig", "Prediction", "StreamStats"]
