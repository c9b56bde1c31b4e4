"""Alertmanager's fingerprint of a label set, so an alert has the same id here and in Alertmanager."""

from __future__ import annotations

from collections.abc import Mapping

_OFFSET = 14695981039346656037
_PRIME = 1099511628211
_MASK = (1 << 64) - 1
_SEPARATOR = 0xFF


def fingerprint(labels: Mapping[str, str]) -> str:
    """FNV-1a 64 over name, 0xff, value, 0xff for each label sorted by name (prometheus/common's
    labelSetToFingerprint), as 16 hex digits."""
    h = _OFFSET
    for name in sorted(labels):
        for part in (name, labels[name]):
            for byte in part.encode():
                h = ((h ^ byte) * _PRIME) & _MASK
            h = ((h ^ _SEPARATOR) * _PRIME) & _MASK
    return f"{h:016x}"
