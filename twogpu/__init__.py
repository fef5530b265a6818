"""Generic two-device runtime for column-split ("two-tower") networks.

Placement of the two towers, the one helper through which activations cross between them,
and (in later modules) the trainer and data-parallel replicas. This package never imports
``alexnet``: it knows nothing about the network it runs.
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
