"""Outgoing HTTP calls: the calls an app makes with ``requests`` and ``httpx``, observed.

One concern per module: :mod:`~flask_observe.clients.install` puts the hooks in (once per
process) and, in ``contrib`` mode, OpenTelemetry's instrumentations; ``_requests`` and
``_httpx`` are each library's hook; :mod:`~flask_observe.clients.calls` records one call
(span, headers, count, debug line) for both; :mod:`~flask_observe.clients.metrics` holds
``http_client_requests_total`` and ``http_client_request_duration_seconds``. Nothing here
is public API: ``Observe`` sets it up from ``OBSERVE_HTTP_CLIENTS`` and its sibling keys (see
``docs/clients.rst``).
"""

from __future__ import annotations

__all__: list[str] = []
