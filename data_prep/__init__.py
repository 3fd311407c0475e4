"""Layer 3: recordings -> synchronized, filtered, cropped training datasets.

The recordings themselves (bags, bag dumps, simulator logs, comma2k19) are read by
:mod:`vbp_live.recordings`; this package only turns what they yield into datasets.

Public API::

    from data_prep import PrepConfig, load_config, prepare, synchronize

    cfg = load_config("configs/prep.yaml", {"sync.method": "zoh"})
    result = prepare(["drive.bag"], "data/drive", cfg)      # dataset dir (vbp_live/dataset-v1)
    scan, plan = synchronize(["segment/"], cfg)             # labels / drop reasons, nothing written

The command is ``vbp-live prep`` (see the README, "Preparing data").
"""

from data_prep.config import PrepConfig, load_config
from data_prep.pipeline import prepare, synchronize
from data_prep.result import PrepResult

__all__ = ["PrepConfig", "PrepResult", "load_config", "prepare", "synchronize"]
