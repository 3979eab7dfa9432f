"""Delivery of events to sessions: :class:`LocalFanout` for one node."""

from chatnet.fanout.local import LocalFanout

__all__ = ["LocalFanout"]
