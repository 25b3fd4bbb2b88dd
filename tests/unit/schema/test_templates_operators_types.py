"""`<name>` templates, VALUE operators and value-type conversion."""

from __future__ import annotations

from typing import Any

import pytest

from offline_ingestor.schema.models import OPERATORS, VALUE_TYPES, ValueVariable
from offline_ingestor.schema.operators import apply_operator
from offline_ingestor.schema.templates import Resolved, UnresolvedVariable, references, render
from offline_ingestor.schema.value_types import convert

REGISTRY = {
    "temp": Resolved(21.5, "K"),
    "names": Resolved(["a", "b"]),
    "meta": Resolved({"k": "v"}),
    "n": Resolved(3),
    "s": Resolved("text"),
}


def op(operator: str, value: Any, **arguments: Any) -> Any:
    """Apply ``operator`` to ``value`` the way a VALUE variable does."""
    variable = ValueVariable(source="VALUE", value="<x>", operator=operator, **arguments)
    return apply_operator(value, variable)


# -- templates -------------------------------------------------------------------------------


def test_bare_reference_keeps_value_type_and_unit() -> None:
    """A template that is exactly `<name>` yields the variable unchanged, unit included."""
    assert render("<temp>", REGISTRY) == Resolved(21.5, "K")
    assert render("<names>", REGISTRY).value == ["a", "b"]
    assert render("<meta>", REGISTRY).value == {"k": "v"}


def test_mixed_text_uses_str_and_drops_unit() -> None:
    """Text around a reference gives a string built with str() and no unit."""
    assert render("T=<temp> for <names>", REGISTRY) == Resolved("T=21.5 for ['a', 'b']", "")


def test_every_reference_in_a_string_is_replaced() -> None:
    """Several references, and the same reference twice, are all substituted."""
    assert render("<s>/<n>/<s>", REGISTRY).value == "text/3/text"


def test_list_is_rendered_item_wise() -> None:
    """A list template renders each item, keeping bare-reference types."""
    assert render(["<n>", "x-<s>", 7], REGISTRY).value == [3, "x-text", 7]


def test_dict_is_rendered_value_wise() -> None:
    """A mapping template renders its values; keys stay as written."""
    assert render({"<s>": "<n>", "b": "<s>!"}, REGISTRY).value == {"<s>": 3, "b": "text!"}


def test_non_string_scalars_pass_through() -> None:
    """Numbers, booleans and None in a template are returned as they are."""
    assert render(5, REGISTRY).value == 5
    assert render(None, REGISTRY).value is None
    assert render(True, REGISTRY).value is True


@pytest.mark.parametrize("template", ["<missing>", "pre <missing> post", ["<missing>"], {"k": "<missing>"}])
def test_unresolved_name_raises(template: Any) -> None:
    """A reference to an unknown name raises UnresolvedVariable naming it."""
    with pytest.raises(UnresolvedVariable) as caught:
        render(template, REGISTRY)
    assert caught.value.args[0] == "missing"


def test_literal_angle_brackets_are_not_an_error() -> None:
    """`a < b > c` is not a reference (upstream raises on any `<` and `>`)."""
    assert render("a < b > c", REGISTRY).value == "a < b > c"
    assert render("<1> and <x y>", REGISTRY).value == "<1> and <x y>"


def test_references_finds_names_in_nested_templates() -> None:
    """references() collects names from strings, lists and mapping values."""
    assert references(["<a>", {"k": "x <b.c> <d-e>"}, 3, "a < b >"]) == {"a", "b.c", "d-e"}
    assert references([]) == set()
    assert references(None) == set()


# -- operators -------------------------------------------------------------------------------


def test_operator_table_is_complete() -> None:
    """Every operator the models accept can be applied."""
    samples: dict[str, dict[str, Any]] = {
        "getitem": {"field": 0},
        "str-replace": {"pattern": "a", "replacement": "b"},
    }
    for name in OPERATORS:
        value = ["1", "2"] if name in ("join_with_space", "sum", "getitem") else "/a/b/c.hdf"
        op(name, value, **samples.get(name, {}))


def test_join_with_space_joins_with_comma_space_like_upstream() -> None:
    """join_with_space joins with ", " (upstream's behaviour, despite the name)."""
    assert op("join_with_space", ["Anders", "Søren"]) == "Anders, Søren"


def test_join_with_space_parses_a_list_literal_string() -> None:
    """A string holding a Python list literal is parsed before joining."""
    assert op("join_with_space", "['a', 'b', 'c']") == "a, b, c"


def test_join_with_space_refuses_a_non_list() -> None:
    """A value that is not a list is an error naming its type."""
    with pytest.raises(ValueError, match="join_with_space needs a list, got int"):
        op("join_with_space", 5)


def test_filename_operator() -> None:
    """filename gives the basename."""
    assert op("filename", "/ess/data/coda/run1.hdf") == "run1.hdf"


def test_dirname_operator() -> None:
    """dirname gives the containing folder."""
    assert op("dirname", "/ess/data/coda/run1.hdf") == "/ess/data/coda"


def test_dirname_2_operator() -> None:
    """dirname-2 gives the folder two levels up."""
    assert op("dirname-2", "/ess/data/coda/run1.hdf") == "/ess/data"


def test_getitem_with_int_field_indexes_a_list() -> None:
    """An int field indexes a list."""
    assert op("getitem", [{"id": 1}, {"id": 2}], field=1) == {"id": 2}


def test_getitem_with_str_field_reads_a_mapping() -> None:
    """A str field reads a mapping key."""
    assert op("getitem", {"id": "odin-1", "name": "ODIN"}, field="id") == "odin-1"


def test_getitem_missing_index_error_text() -> None:
    """An index beyond the list names the index and the list length."""
    with pytest.raises(ValueError, match=r"^getitem: no item 5 in list of 2$"):
        op("getitem", ["a", "b"], field=5)


def test_getitem_missing_key_error_text() -> None:
    """A missing mapping key names the key and the mapping size."""
    with pytest.raises(ValueError, match=r"^getitem: no item 'pid' in dict of 1$"):
        op("getitem", {"id": 1}, field="pid")


def test_getitem_str_field_on_list_error_text() -> None:
    """A str field on a list (upstream TypeError) is a clear error."""
    with pytest.raises(ValueError, match=r"getitem: no item '0' in list of 1"):
        op("getitem", ["a"], field="0")


def test_str_replace_replaces_every_occurrence() -> None:
    """str-replace is a plain substring replacement of every occurrence."""
    assert op("str-replace", "a.b.c", pattern=".", replacement="/") == "a/b/c"


def test_str_replace_stringifies_the_value() -> None:
    """A non-string value is converted with str() first."""
    assert op("str_replace", 1234, pattern="23", replacement="-") == "1-4"


def test_urlsafe_operator() -> None:
    """urlsafe quotes like quote_plus: spaces become + and / becomes %2F."""
    assert op("urlsafe", "a b/c") == "a+b%2Fc"


def test_to_lower_operator() -> None:
    """to-lower lower-cases (after str())."""
    assert op("to-lower", "ODIN") == "odin"


def test_to_upper_operator() -> None:
    """to-upper upper-cases."""
    assert op("to_upper", "odin") == "ODIN"


def test_sum_of_numbers() -> None:
    """sum adds a list of numbers, keeping int when all are ints."""
    assert op("sum", [1, 2, 3]) == 6
    assert op("sum", [10.5, 12.5]) == 23.0


def test_sum_of_strings() -> None:
    """Numeric strings in the list are converted to float before summing."""
    assert op("sum", ["1", "2.5"]) == 3.5


def test_sum_of_a_list_literal_string() -> None:
    """A string holding a list literal is parsed before summing."""
    assert op("sum", "[1, 2]") == 3


def test_sum_refuses_non_numeric_items() -> None:
    """A list item that is not a number is an error."""
    with pytest.raises(ValueError):
        op("sum", ["a", 1])


def test_sum_refuses_a_non_list() -> None:
    """A scalar is an error naming its type."""
    with pytest.raises(ValueError, match="sum needs a list, got int"):
        op("sum", 5)


def test_no_operator_returns_the_value() -> None:
    """A variable without an operator passes its value through unchanged."""
    variable = ValueVariable(source="VALUE", value="<x>")
    assert apply_operator(["kept"], variable) == ["kept"]


# -- value types -----------------------------------------------------------------------------


def test_every_value_type_converts_something() -> None:
    """Every declared value type has a converter."""
    samples: dict[str, Any] = {"none": None, "email": "a@b.org", "dict": {}, "list": [], "date": 0}
    for name in VALUE_TYPES:
        convert(samples.get(name, "1"), name)


def test_string() -> None:
    """string applies str()."""
    assert convert(1.5, "string") == "1.5"
    assert convert(["a"], "string") == "['a']"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (["a", 1], ["a", "1"]),
        ("['a','b']", ["a", "b"]),
        ("abc", ["abc"]),
        (5, ["5"]),
        (("x", "y"), ["x", "y"]),
    ],
)
def test_string_list(value: Any, expected: list[str]) -> None:
    """string[] accepts lists, list literals and scalars (wrapped in a list)."""
    assert convert(value, "string[]") == expected


def test_integer_accepts_integral_values() -> None:
    """integer accepts ints, integral floats and numeric strings."""
    assert convert("123", "integer") == 123
    assert convert(4.0, "integer") == 4
    assert convert(7, "integer") == 7


def test_integer_refuses_a_fraction() -> None:
    """1.5 is not silently truncated to 1."""
    with pytest.raises(ValueError, match=r"^cannot convert 1\.5 to integer: not an integer: 1\.5$"):
        convert(1.5, "integer")


def test_integer_refuses_a_fractional_string() -> None:
    """The string "1.5" is not an integer."""
    with pytest.raises(ValueError, match=r"cannot convert '1\.5' to integer"):
        convert("1.5", "integer")


def test_integer_list() -> None:
    """integer[] converts each item, from a list or a list literal."""
    assert convert("['1', '2']", "integer[]") == [1, 2]
    assert convert([3.0, 4], "integer[]") == [3, 4]


def test_integer_list_refuses_a_fraction() -> None:
    """One fractional item fails the whole conversion."""
    with pytest.raises(ValueError, match="to integer\\[\\]"):
        convert([1, 2.5], "integer[]")


def test_float() -> None:
    """float converts numbers and numeric strings."""
    assert convert("2.5", "float") == 2.5
    assert convert(3, "float") == 3.0


def test_float_refuses_text() -> None:
    """Non-numeric text is an error naming the value."""
    with pytest.raises(ValueError, match="cannot convert 'abc' to float"):
        convert("abc", "float")


def test_float_list() -> None:
    """float[] converts each item, from a list or a list literal."""
    assert convert("[1, 2.5]", "float[]") == [1.0, 2.5]
    assert convert(["3"], "float[]") == [3.0]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1994-06-28T10:20:30Z", "1994-06-28T10:20:30+00:00"),
        ("2024-10-28T09:06:41.186Z", "2024-10-28T09:06:41.186000+00:00"),
        ("2024-01-01T10:00:00", "2024-01-01T10:00:00"),
        ("2024-01-01T10:00:00+02:00", "2024-01-01T10:00:00+02:00"),
        (0, "1970-01-01T00:00:00+00:00"),
        (1.5, "1970-01-01T00:00:01.500000+00:00"),
    ],
)
def test_date(value: Any, expected: str) -> None:
    """date keeps the input's zone (Z → +00:00) and reads epoch numbers as UTC."""
    assert convert(value, "date") == expected


@pytest.mark.parametrize("value", [None, True, "yesterday", ["2024-01-01"]])
def test_date_refuses_non_dates(value: Any) -> None:
    """None, booleans and non-ISO text are errors (upstream silently yields None)."""
    with pytest.raises(ValueError, match="to date"):
        convert(value, "date")


def test_dict() -> None:
    """dict accepts a mapping or a mapping literal."""
    assert convert({"a": 1}, "dict") == {"a": 1}
    assert convert("{'a': 1}", "dict") == {"a": 1}


def test_dict_refuses_a_list() -> None:
    """A list literal is not a mapping."""
    with pytest.raises(ValueError, match="not a mapping"):
        convert("[1]", "dict")


def test_list() -> None:
    """list accepts a list or a list literal."""
    assert convert([1, "a"], "list") == [1, "a"]
    assert convert("[1, 2]", "list") == [1, 2]


@pytest.mark.parametrize("value", [(1, 2), "abc", {"a": 1}])
def test_list_refuses_non_lists(value: Any) -> None:
    """Tuples, plain text and mappings are not lists."""
    with pytest.raises(ValueError, match="to list"):
        convert(value, "list")


@pytest.mark.parametrize("value", ["a@x.org", "a@x.org; b@y.org", "  first.last@ess.eu  "])
def test_email_accepts_addresses(value: str) -> None:
    """One address, or several separated by `;`, are accepted (trimmed)."""
    assert convert(value, "email") == value.strip()


@pytest.mark.parametrize("value", ["", "not-an-email", "Anders Pettersson", "a@x.org;", "a@b"])
def test_email_refuses_non_addresses(value: str) -> None:
    """Empty text, names and half addresses are refused before SciCat sees them."""
    with pytest.raises(ValueError, match="not an email address"):
        convert(value, "email")


def test_link() -> None:
    """link applies str()."""
    assert convert("https://doi.org/x", "link") == "https://doi.org/x"


def test_none_accepts_only_null() -> None:
    """none yields None for None and refuses anything else, including 'null'."""
    assert convert(None, "none") is None
    with pytest.raises(ValueError, match="type none needs a null value"):
        convert("null", "none")


def test_unknown_value_type() -> None:
    """An unknown type name is an error naming it."""
    with pytest.raises(ValueError, match="unknown value type 'wat'"):
        convert("x", "wat")
