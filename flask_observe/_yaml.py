"""The YAML of the files flask-observe generates (the rule file, the Alertmanager example),
written by PyYAML.

PyYAML's safe dumper writes them, keys in the order the data has them, with two choices
for the people who read the files: a multi-line string (a PromQL expression) is a literal
block, and a list is indented under its key, as Prometheus' and Alertmanager's own
examples are. PyYAML is imported on the first call: only the ``flask observe rules`` and
``alertmanager`` commands need it, not the app.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["dump"]


def dump(data: Mapping[str, Any], *, header: Iterable[str] = ()) -> str:
    """*data* as a YAML document, after *header* lines written as ``#`` comments.

    :raises yaml.YAMLError: for a value PyYAML's safe dumper does not write (an object).
    """
    import yaml

    lines = [f"# {line}".rstrip() + "\n" for line in header]
    # No line width: a long expression stays one line rather than being folded.
    body = yaml.dump(dict(data), Dumper=_dumper(), sort_keys=False, width=1 << 16)
    return "".join(lines) + body


@functools.cache
def _dumper() -> Any:
    import yaml

    class Dumper(yaml.SafeDumper):
        def increase_indent(self, flow: bool = False, indentless: bool = False) -> Any:
            return super().increase_indent(flow, False)

    def text(dumper: yaml.SafeDumper, value: str) -> Any:
        # PyYAML falls back to a quoted string where a block would not read back the same.
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    return Dumper
