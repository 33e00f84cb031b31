"""The console: what flask-observe records, shown by the app itself at ``/observe``.

A blueprint of Jinja templates and static files served by the app (no CDN: it works
offline and on an API that never renders HTML), and a JSON API behind every page. Recent
spans and log lines live in bounded ring buffers in the process, fed by a span processor
and a log handler of the console's own; the route figures come from the app's metrics.
"""
