"""Layer 4: training the steering and sign networks (explicit loop, callbacks, DDP, resume)."""

from vbp_live.train.callbacks import Callback, MetricsCSV, TensorBoard
from vbp_live.train.config import Config, ConfigError, config_to_dict, load_config
from vbp_live.train.data import TrainData, load_data
from vbp_live.train.loop import NonFiniteLossError, Trainer
from vbp_live.train.snapshots import VBPSnapshot, VBPSnapshots

__all__ = [
    "Callback", "Config", "ConfigError", "MetricsCSV", "NonFiniteLossError", "TensorBoard", "TrainData", "Trainer",
    "VBPSnapshot", "VBPSnapshots", "config_to_dict", "load_config", "load_data",
]
