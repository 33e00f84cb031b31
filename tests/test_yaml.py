"""The YAML of the generated files, written by PyYAML: what it writes reads back as the same
data, expressions are literal blocks, and lists are indented under their keys."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from flask_observe._yaml import dump

_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text()
    | st.sampled_from(["yes", "No", "null", "~", "1.5", "0x1f", "2m", "a: b", "a #b", "- x", ""])
)
_values = st.recursive(
    _scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=12,
)


@given(st.dictionaries(st.text(), _values, max_size=5))
def test_any_plain_data_reads_back_unchanged(data: dict[str, Any]) -> None:
    assert yaml.safe_load(dump(data, header=["a header"])) == data


@pytest.mark.parametrize(
    "text",
    [
        "sum(rate(x[5m]))\n/ sum(rate(y[5m]))",
        "line\n  indented\n\nafter a blank\n",
        " leading space\nsecond",
        "tab\there\nsecond",
        "ends with two\n\n",
        "trailing space \nsecond",
        "\u2028 line separator\nx",
    ],
)
def test_multi_line_strings_read_back_unchanged(text: str) -> None:
    assert yaml.safe_load(dump({"expr": text})) == {"expr": text}


def test_expressions_are_literal_blocks_and_lists_are_indented() -> None:
    out = dump(
        {"groups": [{"name": "shop", "rules": [{"record": "a:b:rate5m", "expr": "x\n/ y"}]}]},
        header=["generated"],
    )
    assert out == (
        "# generated\n"
        "groups:\n"
        "  - name: shop\n"
        "    rules:\n"
        "      - record: a:b:rate5m\n"
        "        expr: |-\n"
        "          x\n"
        "          / y\n"
    )


def test_what_yaml_would_misread_is_quoted_and_long_lines_stay_whole() -> None:
    long = 'sum by (job) (rate(http_requests_total{job="shop"}[5m])) ' * 4
    data = {"on": "yes", "n": "1.5", "null": None, "long": long.strip()}
    out = dump(data)
    assert yaml.safe_load(out) == data
    assert "'on': 'yes'" in out
    assert "n: '1.5'" in out
    assert len([line for line in out.splitlines() if line.startswith("long:")]) == 1
    assert len(out.splitlines()) == 4


def test_anything_but_plain_data_is_refused() -> None:
    with pytest.raises(yaml.YAMLError):
        dump({"a": object()})
