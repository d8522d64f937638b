"""How large a collector's cache must be to ride out an outage (pure arithmetic, used by docs/deployment.md).

A collector keeps every reading until an end-to-end ack covers it (`shared/protocol.md`). While acks are held
back (no path to the gateway, or, with a later ack point, no database) the cache fills by one record per
sample period. The worst moment is the end of the outage: the cache then holds everything sampled in a window
of ``outage + ack_delay + catch_up`` seconds, where

- ``ack_delay`` is the normal time from a sample to its ack (readings sent just before the outage were not
  acknowledged yet either), and
- ``catch_up`` is the time after the outage until the backlog is stored and acknowledged (the gateway first
  writes what waited; the collector replays its cache oldest first).

A window of ``W`` seconds holds at most ``floor(W / p) + 1`` samples taken every ``p`` seconds (one at each
end when the phase is unlucky). A full cache does not evict: new samples are not recorded and counted as
dropped (docs/firmware.md), so an undersized cache loses the newest readings, never acknowledged ones.
"""

from __future__ import annotations

import math

#: One cache record of the Arduino collectors: ``A5 | len | 21-byte body | CRC-16`` (protocol section 8).
RECORD_BYTES = 25

# Floating-point division can land just below a whole number (0.3 / 0.1 = 2.9999...); sizing must round
# towards the larger cache, so a quotient this close to the next integer counts as reaching it.
_EPSILON = 1e-9


def _check(name: str, value: float, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number of seconds, got {value!r}")
    if value < 0 or (positive and value == 0):
        raise ValueError(f"{name}: must be {'greater than 0' if positive else 'at least 0'}, got {value!r}")
    return float(value)


def records_needed(outage_s: float, period_s: float, *, ack_delay_s: float = 0.0, catch_up_s: float = 0.0) -> int:
    """Cache records a collector sampling every ``period_s`` needs to lose nothing in an outage of ``outage_s``.

    >>> records_needed(30 * 60, 10)          # a 30-minute database outage, one sample every 10 s
    181
    >>> records_needed(30 * 60, 10, ack_delay_s=2, catch_up_s=60)
    187
    """
    window = (_check("outage_s", outage_s) + _check("ack_delay_s", ack_delay_s) + _check("catch_up_s", catch_up_s))
    period = _check("period_s", period_s, positive=True)
    return math.floor(window / period + _EPSILON) + 1


def bytes_needed(outage_s: float, period_s: float, *, ack_delay_s: float = 0.0, catch_up_s: float = 0.0,
                 record_bytes: int = RECORD_BYTES) -> int:
    """Storage for :func:`records_needed` records of ``record_bytes`` each (the cache's own bookkeeping aside).

    >>> bytes_needed(24 * 3600, 60)          # a day at one sample a minute, Arduino records
    36025
    """
    if isinstance(record_bytes, bool) or not isinstance(record_bytes, int) or record_bytes < 1:
        raise ValueError(f"record_bytes: expected a positive whole number of bytes, got {record_bytes!r}")
    return records_needed(outage_s, period_s, ack_delay_s=ack_delay_s, catch_up_s=catch_up_s) * record_bytes


def outage_covered(records: int, period_s: float, *, ack_delay_s: float = 0.0, catch_up_s: float = 0.0) -> float:
    """The longest outage a cache of ``records`` rides out: any outage strictly shorter than the result.

    0.0 when the cache cannot even hold the readings of normal operation (the delays alone fill it).

    >>> outage_covered(38, 10)               # an Uno's EEPROM (38 records) at one sample every 10 s
    380.0
    >>> outage_covered(160, 60, ack_delay_s=2, catch_up_s=60) / 60   # a Mega, once a minute: minutes
    158.96666666666667
    """
    if isinstance(records, bool) or not isinstance(records, int) or records < 0:
        raise ValueError(f"records: expected a whole number of records (0 or more), got {records!r}")
    period = _check("period_s", period_s, positive=True)
    delays = _check("ack_delay_s", ack_delay_s) + _check("catch_up_s", catch_up_s)
    return max(0.0, records * period - delays)


__all__ = ["RECORD_BYTES", "bytes_needed", "outage_covered", "records_needed"]
