"""Layer 4: training the steering and sign networks (explicit loop, callbacks, DDP, resume)."""

from vbp_live.train.callbacks import Callback, MetricsCSV
from vbp_live.train.config import Config, ConfigError, config_to_dict, load_config
from vbp_live.train.data import TrainData, load_data
from vbp_live.train.loop import NonFiniteLossError, Trainer
from vbp_live.train.snapshots import VBPSnapshots

__all__ = [
    "Callback", "Config", "ConfigError", "MetricsCSV", "NonFiniteLossError", "TrainData", "Trainer",
    "VBPSnapshots", "config_to_dict", "load_config", "load_data",
]
