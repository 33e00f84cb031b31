"""gunicorn hooks for bench/server.py's servers, as a production config has them: the files
of an earlier run cleared, and a dead worker's files folded (flask_observe.gunicorn)."""

from flask_observe.gunicorn import child_exit, on_starting  # noqa: F401
