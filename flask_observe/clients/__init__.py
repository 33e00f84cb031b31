"""Outgoing HTTP calls: the calls an app makes with ``requests`` and ``httpx``, observed.

Empty for now: the instrumentation of each library, and the recording of a call that they
share, land here module by module.
"""

from __future__ import annotations

__all__: list[str] = []
