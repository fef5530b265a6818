"""Generic two-device runtime for column-split ("two-tower") networks.

Placement of the two towers (:mod:`.placement`), the one helper through which activations cross
between them (:mod:`.exchange`), the training loop (:mod:`.trainer`, its contract in :mod:`.task`),
crash-safe checkpoints (:mod:`.checkpoint`), random streams (:mod:`.rng`), precision, timing and
data-parallel replicas (:mod:`.replicas`). This package never imports ``alexnet``: it knows nothing
about the network it runs.
"""

from twogpu.exchange import Cross, CrossingRecord, cross, exchange, gather, record_crossings
from twogpu.placement import TowerDevices, feed, resolve_devices

__all__ = [
    "Cross",
    "CrossingRecord",
    "TowerDevices",
    "cross",
    "exchange",
    "feed",
    "gather",
    "record_crossings",
    "resolve_devices",
]
