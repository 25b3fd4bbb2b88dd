"""Hostile schema files: YAML alias bombs and exploding templates (issue 12, item 12)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from offline_ingestor.errors import VariableError
from offline_ingestor.schema import load_schema_file
from offline_ingestor.schema.variables import extract_variables

VALID = """\
id: good
name: Good
instrument: x
selector: '*'
order: 1
variables:
  a:
    source: VALUE
    value: hello
schema:
  title:
    machine_name: datasetName
    field_type: high_level
    value: <a>
    type: string
"""

#: Nine levels of nine aliases inside one variable's value: 387 million nodes once expanded,
#: 1 KB on disk, and a valid schema otherwise (so validation and reference checking walk it).
BOMB = (
    "id: bomb\nname: Bomb\ninstrument: x\nselector: '*'\norder: 0\n"
    "variables:\n  a:\n    source: VALUE\n    value:\n"
    '      - &l0 ["lol"]\n'
    + "".join(f"      - &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 10))
    + "schema: {}\n"
)


def test_alias_bomb_is_refused_and_the_other_schemas_load(tmp_path: Path) -> None:
    """One alias bomb neither hangs loading nor stops the other schema files from loading."""
    (tmp_path / "a-bomb.imsc.yml").write_text(BOMB)
    (tmp_path / "b-good.imsc.yml").write_text(VALID)
    script = (
        "import json, sys; from pathlib import Path; from offline_ingestor.schema import load_schemas;"
        "s = load_schemas(Path(sys.argv[1]));"
        "print(json.dumps({'ok': [x.id for x in s.schemas], 'broken': [b.message for b in s.broken]}))"
    )
    # A child process with a timeout: before the fix this never finishes.
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["ok"] == ["good"]
    [message] = result["broken"]
    assert message.startswith(f"{tmp_path / 'a-bomb.imsc.yml'}:11: YAML aliases (*l0) are not allowed")


def test_alias_in_a_single_file_is_a_schema_error(tmp_path: Path) -> None:
    path = tmp_path / "x.imsc.yml"
    path.write_text(VALID.replace("value: hello", "value: &h hello\n  b:\n    source: VALUE\n    value: *h"))
    with pytest.raises(Exception, match=r"x\.imsc\.yml:\d+: YAML aliases \(\*h\) are not allowed"):
        load_schema_file(path)


def test_template_chain_growing_16x_per_level_is_bounded(tmp_path: Path) -> None:
    """``b = <a> 16 times, c = <b> 16 times, ...``: refused at 1 MB, not a MemoryError."""
    levels = ["v0:\n    source: VALUE\n    value: xxxxxxxxxxxxxxxx\n"]
    for i in range(1, 6):
        levels.append(f"v{i}:\n    source: VALUE\n    value: '{f'<v{i - 1}>' * 16}'\n")
    text = VALID.replace("  a:\n    source: VALUE\n    value: hello\n", "  " + "  ".join(levels)).replace(
        "<a>", "<v0>"
    )
    path = tmp_path / "grow.imsc.yml"
    path.write_text(text)
    schema = load_schema_file(path)
    with pytest.raises(
        VariableError, match=r"variable v4 .*template output of 1048576 characters exceeds 1000000"
    ):
        extract_variables(schema, None, {}, None)
