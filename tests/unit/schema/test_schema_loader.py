"""Schema files: loading upstream schemas, precise load errors, ordering and selection."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from offline_ingestor.errors import NoMatchingSchema, SchemaError
from offline_ingestor.schema import load_schema_file, load_schemas
from offline_ingestor.schema.models import ValueVariable

#: A valid schema; line numbers below refer to this layout.
#: line 1 id, 4 selector, 5 order, 6 variables, 7 `a:`, 10 `{extra}` starts, then schema.
TEMPLATE = """\
id: {id}
name: {name}
instrument: x
selector: {selector}
order: {order}
variables:
  a:
    source: VALUE
    value: hello
{extra}schema:
  title:
    machine_name: datasetName
    field_type: high_level
    value: <a>
    type: string
"""


def schema_text(
    *, id: str = "s1", name: str = "One", selector: str = "'*'", order: int = 1, extra: str = ""
) -> str:
    return TEMPLATE.format(id=id, name=name, selector=selector, order=order, extra=extra)


def write_schema(directory: Path, filename: str, **kwargs: object) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / filename
    path.write_text(schema_text(**kwargs), encoding="utf-8")  # type: ignore[arg-type]
    return path


def load_error(tmp_path: Path, text: str) -> str:
    path = tmp_path / "bad.imsc.yml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SchemaError) as caught:
        load_schema_file(path)
    return str(caught.value)


@pytest.fixture
def upstream_schemas(reference: Path, tmp_path: Path) -> Path:
    """The upstream example schemas, copied without their `.example` suffix."""
    target = tmp_path / "upstream"
    target.mkdir()
    for source in (reference / "scicat-ingestor/resources").glob("*.imsc.yml.example"):
        shutil.copy(source, target / source.name.removesuffix(".example"))
    return target


# -- upstream schemas ------------------------------------------------------------------------


@pytest.mark.reference
def test_small_upstream_schemas_load(upstream_schemas: Path) -> None:
    """small-coda and small-ymir load and are ordered by their `order`."""
    loaded = load_schemas(upstream_schemas)
    assert [schema.name for schema in loaded.schemas] == [
        "Ymir Metadata Schema",
        "Test Coda Metadata Schema",
    ]
    assert [schema.order for schema in loaded.schemas] == [100, 110]


@pytest.mark.reference
def test_upstream_schema_with_getitem_keeps_int_field(upstream_schemas: Path) -> None:
    """small-coda's `field: 0` stays an int so getitem indexes the list."""
    coda = load_schema_file(upstream_schemas / "small-coda.imsc.yml")
    variable = coda.variables["instrument_data"]
    assert isinstance(variable, ValueVariable)
    assert variable.operator == "getitem"
    assert variable.field == 0


@pytest.mark.reference
@pytest.mark.parametrize("name", ["base", "coda", "dream", "loki"])
def test_self_referencing_upstream_schemas_are_broken(upstream_schemas: Path, name: str) -> None:
    """The big upstream schemas use a variable inside its own definition: file:line error."""
    loaded = load_schemas(upstream_schemas)
    broken = {Path(item.file).name: item for item in loaded.broken}
    item = broken[f"{name}.imsc.yml"]
    assert item.message.startswith(f"{upstream_schemas / name}.imsc.yml:")
    line = int(item.message.split(":")[1])
    text = (upstream_schemas / f"{name}.imsc.yml").read_text().splitlines()
    assert text[line - 1].strip() == "acquisition_team_members:"
    assert "uses <acquisition_team_members>, which is itself" in item.message


@pytest.mark.reference
def test_broken_upstream_schema_keeps_its_selector(upstream_schemas: Path) -> None:
    """A broken upstream schema still claims /ess/data files, which then fail loudly."""
    loaded = load_schemas(upstream_schemas)
    with pytest.raises(SchemaError, match="the schema for this file is broken"):
        loaded.select("/ess/data/coda/2024/run.hdf")


@pytest.mark.reference
def test_example_suffix_is_not_loaded(reference: Path, tmp_path: Path) -> None:
    """Files ending in `.example` are ignored (upstream's substring test would load them)."""
    target = tmp_path / "examples"
    shutil.copytree(reference / "scicat-ingestor/resources", target)
    loaded = load_schemas(target)
    assert loaded.schemas == []
    assert loaded.broken == []


# -- which files are loaded ------------------------------------------------------------------


def test_only_imsc_yml_and_yaml_files_are_loaded(tmp_path: Path) -> None:
    """*.imsc.yml and *.imsc.yaml load; .json, .bak, hidden and other YAML files do not."""
    write_schema(tmp_path, "a.imsc.yml", id="a")
    write_schema(tmp_path, "b.imsc.yaml", id="b")
    write_schema(tmp_path, "c.imsc.yml.bak", id="c")
    write_schema(tmp_path, "d.yml", id="d")
    write_schema(tmp_path, ".e.imsc.yml", id="e")
    write_schema(tmp_path, "f.imsc.json", id="f")
    loaded = load_schemas(tmp_path)
    assert sorted(schema.id for schema in loaded.schemas) == ["a", "b"]


def test_one_broken_file_does_not_stop_the_others(tmp_path: Path) -> None:
    """A broken file is set aside with its message; the valid ones still load."""
    write_schema(tmp_path, "good.imsc.yml", id="good")
    (tmp_path / "bad.imsc.yml").write_text("id: bad\nname: [unclosed\n")
    loaded = load_schemas(tmp_path)
    assert [schema.id for schema in loaded.schemas] == ["good"]
    assert len(loaded.broken) == 1
    assert "bad.imsc.yml" in loaded.broken[0].message
    assert "invalid YAML" in loaded.broken[0].message


def test_missing_directory_is_a_schema_error(tmp_path: Path) -> None:
    """A schemas directory that does not exist is reported by path."""
    with pytest.raises(SchemaError, match="schemas directory not found"):
        load_schemas(tmp_path / "absent")


def test_duplicate_ids_are_reported(tmp_path: Path) -> None:
    """The second file with an id already loaded is broken, naming both files."""
    first = write_schema(tmp_path, "a.imsc.yml", id="same")
    write_schema(tmp_path, "b.imsc.yml", id="same")
    loaded = load_schemas(tmp_path)
    assert [Path(schema.source_file).name for schema in loaded.schemas] == ["a.imsc.yml"]
    assert len(loaded.broken) == 1
    message = loaded.broken[0].message
    assert "b.imsc.yml:1: id: duplicate schema id 'same'" in message
    assert str(first) in message


# -- precise load errors ---------------------------------------------------------------------


def test_unknown_operator_names_it_and_its_line(tmp_path: Path) -> None:
    """An unknown operator is refused at load with its line and the known operators."""
    extra = "  b:\n    source: VALUE\n    value: <a>\n    operator: frobnicate\n"
    message = load_error(tmp_path, schema_text(extra=extra))
    assert "bad.imsc.yml:13: variables.b.operator: unknown operator 'frobnicate'" in message
    assert "str-replace" in message


def test_unknown_value_type_names_it_and_its_line(tmp_path: Path) -> None:
    """An unknown value_type is refused at load with its line and the bad value."""
    extra = "  b:\n    source: VALUE\n    value: <a>\n    value_type: strung\n"
    message = load_error(tmp_path, schema_text(extra=extra))
    assert "bad.imsc.yml:13: variables.b.value_type:" in message
    assert "'strung'" in message


def test_unknown_item_type_names_it_and_its_line(tmp_path: Path) -> None:
    """An unknown `type` on a schema item is refused with the item's key path and line."""
    text = schema_text().replace("    type: string", "    type: strung")
    message = load_error(tmp_path, text)
    assert "bad.imsc.yml:15: schema.title.type:" in message
    assert "'strung'" in message


def test_unknown_source_names_it_and_its_line(tmp_path: Path) -> None:
    """A variable source other than NXS/SC/VALUE is refused with the variable's line."""
    extra = "  b:\n    source: FILE\n    value: <a>\n"
    message = load_error(tmp_path, schema_text(extra=extra))
    assert "bad.imsc.yml:10: variables.b:" in message
    assert "'FILE'" in message


def test_unknown_variable_key_names_it_and_its_line(tmp_path: Path) -> None:
    """An unknown key in a variable is refused (upstream aborts on it too)."""
    extra = "  b:\n    source: VALUE\n    value: <a>\n    colour: red\n"
    message = load_error(tmp_path, schema_text(extra=extra))
    assert message.endswith("bad.imsc.yml:13: variables.b.colour: unknown key")


def test_unknown_top_level_key_names_it_and_its_line(tmp_path: Path) -> None:
    """An unknown top-level key is refused with its line."""
    message = load_error(tmp_path, schema_text() + "colour: red\n")
    assert message.endswith("bad.imsc.yml:16: colour: unknown key")


def test_missing_required_key_is_reported(tmp_path: Path) -> None:
    """A schema without `schema` fails naming the missing key."""
    text = schema_text().split("schema:\n")[0]
    message = load_error(tmp_path, text)
    assert "schema: Field required" in message


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("'other:contains:x'", "unknown target 'other'"),
        ("'file_name:starts_with:/'", "unknown target 'file_name'"),
        ("'filename:ends_with:x'", "unknown function 'ends_with'"),
        ("'nocolon'", "is not TARGET:FUNCTION:ARGUMENT"),
        ("{or: []}", "'or' needs a non-empty list"),
        ("{xor: ['*']}", "selector key 'xor' is unknown"),
        ("{}", "selector mapping is empty"),
        ("{or: ['*', 'filename:bogus:x']}", "unknown function 'bogus'"),
    ],
)
def test_bad_selector_is_refused_with_its_line(tmp_path: Path, selector: str, expected: str) -> None:
    """Selectors upstream silently never (or always) matches are refused at load."""
    message = load_error(tmp_path, schema_text(selector=selector))
    assert "bad.imsc.yml:4: selector:" in message
    assert expected in message


def test_reference_to_undefined_variable_in_item_is_refused(tmp_path: Path) -> None:
    """A schema item using an undefined `<name>` fails at load, naming the item's line."""
    message = load_error(tmp_path, schema_text().replace("value: <a>", "value: <zzz>"))
    assert message.endswith("bad.imsc.yml:14: schema.title.value: <zzz> is not a variable")


def test_reference_to_later_variable_is_refused(tmp_path: Path) -> None:
    """A variable may only use variables defined above it."""
    text = schema_text(extra="  b:\n    source: VALUE\n    value: x\n")
    message = load_error(tmp_path, text.replace("value: hello", "value: <b>"))
    assert message.endswith("bad.imsc.yml:7: variables.a: uses <b>, which is defined later")


def test_builtin_variables_may_be_referenced(tmp_path: Path) -> None:
    """Built-ins such as <data_file_path> need no definition."""
    path = tmp_path / "ok.imsc.yml"
    path.write_text(schema_text().replace("value: hello", "value: <data_file_path>"))
    assert load_schema_file(path).variables["a"].source == "VALUE"


def test_non_mapping_file_is_refused(tmp_path: Path) -> None:
    """A schema file holding a list is refused at line 1."""
    assert load_error(tmp_path, "- a\n- b\n").endswith("bad.imsc.yml:1: a schema file must be a mapping")


def test_broken_yaml_reports_its_line(tmp_path: Path) -> None:
    """A YAML syntax error is reported with a line number."""
    message = load_error(tmp_path, "id: a\nname: [x\n")
    assert "bad.imsc.yml:3: invalid YAML" in message


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [
        ("str_replace", "str-replace"),
        ("str-replace", "str-replace"),
        ("to_lower", "to-lower"),
        ("to-upper", "to-upper"),
        ("to_upper", "to-upper"),
        ("dirname_2", "dirname-2"),
        ("join-with-space", "join_with_space"),
        ("join_with_space", "join_with_space"),
    ],
)
def test_operator_spellings_with_dash_or_underscore(tmp_path: Path, spelling: str, canonical: str) -> None:
    """Documented `_` spellings and coded `-` spellings both load, to one canonical name."""
    extra = (
        "  b:\n    source: VALUE\n    value: <a>\n"
        f"    operator: {spelling}\n    pattern: l\n    replacement: L\n"
    )
    path = tmp_path / "ok.imsc.yml"
    path.write_text(schema_text(extra=extra))
    variable = load_schema_file(path).variables["b"]
    assert isinstance(variable, ValueVariable)
    assert variable.operator == canonical


def test_str_replace_without_pattern_is_refused(tmp_path: Path) -> None:
    """str-replace without pattern/replacement fails at load (upstream silently no-ops)."""
    extra = "  b:\n    source: VALUE\n    value: <a>\n    operator: str_replace\n    replacement: x\n"
    message = load_error(tmp_path, schema_text(extra=extra))
    assert "bad.imsc.yml:10: variables.b: operator str-replace needs 'pattern'" in message


def test_getitem_without_field_is_refused(tmp_path: Path) -> None:
    """getitem without `field` fails at load (upstream fails later with v[None])."""
    extra = "  b:\n    source: VALUE\n    value: <a>\n    operator: getitem\n"
    message = load_error(tmp_path, schema_text(extra=extra))
    assert "bad.imsc.yml:10: variables.b: operator getitem needs 'field'" in message


# -- ordering and selection ------------------------------------------------------------------


def test_schemas_sort_by_order_then_name_case_insensitively(tmp_path: Path) -> None:
    """Order decides first; equal orders sort by name ignoring case."""
    write_schema(tmp_path, "1.imsc.yml", id="late", name="aaa", order=20)
    write_schema(tmp_path, "2.imsc.yml", id="upper", name="Beta", order=10)
    write_schema(tmp_path, "3.imsc.yml", id="lower", name="alpha", order=10)
    write_schema(tmp_path, "4.imsc.yml", id="gamma", name="gamma", order=10)
    loaded = load_schemas(tmp_path)
    assert [schema.id for schema in loaded.schemas] == ["lower", "upper", "gamma", "late"]


def test_first_matching_schema_wins(tmp_path: Path) -> None:
    """Of two matching schemas, the one sorted first is selected."""
    write_schema(tmp_path, "a.imsc.yml", id="broad", selector="'*'", order=50)
    write_schema(tmp_path, "b.imsc.yml", id="narrow", selector="'filename:contains:coda'", order=10)
    loaded = load_schemas(tmp_path)
    assert loaded.select("/data/coda/run1.hdf").id == "narrow"
    assert loaded.select("/data/ymir/run1.hdf").id == "broad"


def test_starts_with_tests_the_full_path(tmp_path: Path) -> None:
    """`starts_with` is tested against the full path, not the basename."""
    write_schema(tmp_path, "a.imsc.yml", id="ess", selector="'filename:starts_with:/ess/data'")
    loaded = load_schemas(tmp_path)
    assert loaded.select("/ess/data/x.hdf").id == "ess"
    with pytest.raises(NoMatchingSchema):
        loaded.select("/other/ess/data/x.hdf")


def test_and_or_selectors_nest(tmp_path: Path) -> None:
    """An `and` of an `or` requires one of the alternatives and every other term."""
    selector = (
        "{and: ['filename:starts_with:/ess', {or: ['filename:contains:coda', 'filename:contains:dream']}]}"
    )
    write_schema(tmp_path, "a.imsc.yml", id="nested", selector=selector)
    loaded = load_schemas(tmp_path)
    assert loaded.select("/ess/dream/r.hdf").id == "nested"
    with pytest.raises(NoMatchingSchema):
        loaded.select("/ess/loki/r.hdf")
    with pytest.raises(NoMatchingSchema):
        loaded.select("/data/coda/r.hdf")


def test_fallback_used_when_nothing_matches(tmp_path: Path) -> None:
    """With a fallback configured, an unmatched file gets the fallback schema."""
    write_schema(tmp_path / "schemas", "a.imsc.yml", id="coda", selector="'filename:contains:coda'")
    fallback = write_schema(tmp_path, "fallback.imsc.yml", id="fallback", order=999)
    loaded = load_schemas(tmp_path / "schemas", fallback=fallback)
    assert loaded.select("/data/other.hdf").id == "fallback"
    assert loaded.select("/data/coda.hdf").id == "coda"


def test_no_matching_schema_without_fallback(tmp_path: Path) -> None:
    """Without a fallback, an unmatched file raises NoMatchingSchema naming the file."""
    write_schema(tmp_path, "a.imsc.yml", id="coda", selector="'filename:contains:coda'")
    with pytest.raises(NoMatchingSchema) as caught:
        load_schemas(tmp_path).select("/data/other.hdf")
    assert caught.value.file == "/data/other.hdf"
    assert "no fallback" in caught.value.message


def test_broken_fallback_is_an_error_at_load(tmp_path: Path) -> None:
    """A configured fallback that does not load fails loading, not each file later."""
    (tmp_path / "schemas").mkdir()
    fallback = tmp_path / "fallback.imsc.yml"
    fallback.write_text(schema_text() + "colour: red\n")
    with pytest.raises(SchemaError, match="colour: unknown key"):
        load_schemas(tmp_path / "schemas", fallback=fallback)


def test_broken_schema_claims_its_files_instead_of_falling_through(tmp_path: Path) -> None:
    """A file selected by a broken schema fails, rather than silently using a later schema."""
    extra = "  b:\n    source: VALUE\n    value: <a>\n    operator: frobnicate\n"
    write_schema(tmp_path, "broken.imsc.yml", id="coda", selector="'filename:contains:coda'",
                 order=10, extra=extra)  # fmt: skip
    write_schema(tmp_path, "catchall.imsc.yml", id="all", selector="'*'", order=50)
    loaded = load_schemas(tmp_path)
    with pytest.raises(SchemaError) as caught:
        loaded.select("/data/coda/run.hdf")
    assert not isinstance(caught.value, NoMatchingSchema)
    assert "unknown operator 'frobnicate'" in str(caught.value)
    assert loaded.select("/data/ymir/run.hdf").id == "all"


def test_broken_schema_with_later_order_does_not_shadow_earlier_one(tmp_path: Path) -> None:
    """A broken schema only claims files no earlier (lower order) schema selects."""
    write_schema(tmp_path, "good.imsc.yml", id="good", selector="'*'", order=1)
    write_schema(tmp_path, "broken.imsc.yml", id="b", order=10, extra="  b:\n    source: X\n")
    assert load_schemas(tmp_path).select("/data/coda/run.hdf").id == "good"


def test_unreadable_broken_schema_claims_no_files(tmp_path: Path) -> None:
    """A file whose selector cannot be read is listed as broken but selects nothing."""
    (tmp_path / "junk.imsc.yml").write_text("id: a\nname: [x\n")
    write_schema(tmp_path, "catchall.imsc.yml", id="all", selector="'*'", order=50)
    loaded = load_schemas(tmp_path)
    assert loaded.broken[0].order is None
    assert loaded.select("/data/run.hdf").id == "all"


def test_by_id_finds_schema_and_fallback(tmp_path: Path) -> None:
    """by_id returns loaded schemas and the fallback; an unknown id is a SchemaError."""
    write_schema(tmp_path / "schemas", "a.imsc.yml", id="one")
    fallback = write_schema(tmp_path, "fallback.imsc.yml", id="fb")
    loaded = load_schemas(tmp_path / "schemas", fallback=fallback)
    assert loaded.by_id("one").id == "one"
    assert loaded.by_id("fb").id == "fb"
    with pytest.raises(SchemaError, match="'gone' is not loaded"):
        loaded.by_id("gone")


def test_packaged_schemas_are_the_shipped_ones() -> None:
    """The schemas inside the package (demo, tests, bench) are byte for byte ``schemas/``."""
    from offline_ingestor.testing.scenario import SCHEMAS_DIR

    shipped = Path(__file__).resolve().parents[3] / "schemas"
    files = sorted(path.relative_to(shipped) for path in shipped.rglob("*.imsc.yml"))
    assert files == sorted(path.relative_to(SCHEMAS_DIR) for path in SCHEMAS_DIR.rglob("*.imsc.yml"))
    for name in files:
        assert (shipped / name).read_bytes() == (SCHEMAS_DIR / name).read_bytes(), name
