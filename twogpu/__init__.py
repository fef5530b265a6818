"""Generic two-device runtime for column-split ("two-tower") networks.

Placement of the two towers, the one helper through which activations cross between them,
and (in later modules) the trainer and data-parallel replicas. This package never imports
``alexnet``: it knows nothing about the network it runs.
"""

from twogpu.exchange import CrossingRecord, cross, exchange, record_crossings
from twogpu.placement import TowerDevices, feed, resolve_devices

__all__ = [
    "CrossingRecord",
    "TowerDevices",
    "cross",
    "exchange",
    "feed",
    "record_crossings",
    "resolve_devices",
]
