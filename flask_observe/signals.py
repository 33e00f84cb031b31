"""flask-observe's signals, made with blinker as Flask's own are.

Connect a receiver with ``health_changed.connect(receiver)``, or for one app with
``health_changed.connect(receiver, app)``. Signals are sent only when they have receivers,
and a receiver that raises is logged on the ``flask_observe`` logger and skipped: it never
breaks the request or the probe that sent the signal, nor keeps the other receivers from
theirs.
"""

from __future__ import annotations

import logging
from typing import Any

from blinker import NamedSignal, Namespace

__all__ = ["health_changed"]

_log = logging.getLogger("flask_observe")

_signals = Namespace()

#: Sent when a health check's status changes from ``"pass"`` to ``"fail"`` or back. The
#: sender is the app; the keyword arguments are ``check`` (the check's name),
#: ``old_status`` and ``new_status`` (``"pass"`` or ``"fail"``), and ``output`` (why the
#: check fails, or ``None`` when it passes). A check's first result sets where it starts,
#: and is not a change. It is sent from the thread serving the probe that saw the change,
#: so a receiver should be quick.
#:
#: .. versionadded:: 0.1
health_changed = _signals.signal("health-changed")


def notify(signal: NamedSignal, sender: Any, **kwargs: Any) -> None:
    """Call each receiver of *signal* for *sender*; log, and skip, one that raises."""
    if not signal.receivers:
        return
    for receiver in signal.receivers_for(sender):
        try:
            receiver(sender, **kwargs)
        except Exception:
            _log.exception("A receiver of the %s signal failed: %r", signal.name, receiver)
