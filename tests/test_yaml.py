"""The YAML emitter of the generated files: what it writes reads back as the same data."""

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
def test_any_data_of_the_known_shape_reads_back_unchanged(data: dict[str, Any]) -> None:
    assert yaml.safe_load(dump(data)) == (data or None)


@pytest.mark.parametrize(
    "text",
    [
        "sum(rate(x[5m]))\n/ sum(rate(y[5m]))",
        "line\n  indented\n\nafter a blank\n",
        " leading space\nsecond",
        "tab\there\nsecond",
        "ends with two\n\n",
        "\u2028 line separator\nx",
    ],
)
def test_multi_line_strings_read_back_unchanged(text: str) -> None:
    assert yaml.safe_load(dump({"expr": text})) == {"expr": text}


def test_expressions_are_literal_blocks_and_simple_words_are_plain() -> None:
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


def test_what_yaml_would_misread_is_quoted() -> None:
    out = dump({"for": "2m", "on": "yes", "q": 'job="shop"', "u": "https://x/y#z"})
    assert out == "for: '2m'\n'on': 'yes'\nq: 'job=\"shop\"'\nu: 'https://x/y#z'\n"


def test_anything_else_is_refused() -> None:
    with pytest.raises(TypeError, match="set"):
        dump({"a": {1, 2}})
    with pytest.raises(TypeError, match="keys are strings"):
        dump({"a": {1: "x"}})
