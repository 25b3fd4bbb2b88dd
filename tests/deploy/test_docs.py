"""The reference docs stay complete and their examples stay valid as the code changes."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from offline_ingestor.config import (
    BROKER_URL_ENV,
    CONFIG_ENV,
    PASSWORD_ENV,
    TOKEN_ENV,
    Config,
    load_config,
    parse_config,
)
from offline_ingestor.schema import OPERATORS, VALUE_TYPES, load_schema_file, load_schemas
from offline_ingestor.schema.models import (
    FIELD_TYPES,
    MetadataItem,
    NexusVariable,
    SampleAttachment,
    Schema,
    ScicatJob,
    ScicatVariable,
    ValueVariable,
)
from offline_ingestor.schema.variables import BUILTIN_NAMES

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
SCHEMA_DOC = DOCS / "schema-language.md"
CONFIG_DOC = DOCS / "configuration.md"
DIFF_DOC = DOCS / "upstream-differences.md"
CONFIG_FILES = sorted((ROOT / "config").glob("*.yml"))
_YAML_BLOCK = re.compile(r"^```yaml\n(.*?)^```", re.DOTALL | re.MULTILINE)


def _mentioned(text: str, name: str) -> bool:
    """``name`` appears in backticks, alone or as the start of a dotted path."""
    return re.search("`" + re.escape(name) + r"[`.]", text) is not None


def _config_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys: list[str] = []
    for name, field in model.model_fields.items():
        dotted = f"{prefix}{name}"
        keys.append(dotted)
        if inspect.isclass(field.annotation) and issubclass(field.annotation, BaseModel):
            keys += _config_keys(field.annotation, f"{dotted}.")
    return keys


def _yaml_blocks(path: Path) -> list[str]:
    return _YAML_BLOCK.findall(path.read_text(encoding="utf-8"))


def _schema_keys(model: type[BaseModel]) -> list[str]:
    return [field.alias or name for name, field in model.model_fields.items() if name != "source_file"]


@pytest.fixture(autouse=True)
def _no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (CONFIG_ENV, BROKER_URL_ENV, TOKEN_ENV, PASSWORD_ENV):
        monkeypatch.delenv(name, raising=False)


def test_docs_exist() -> None:
    """The three reference pages are present and not empty."""
    for path in (SCHEMA_DOC, CONFIG_DOC, DIFF_DOC):
        assert path.is_file() and path.stat().st_size > 1000, path


def test_schema_doc_mentions_every_operator_type_and_builtin() -> None:
    """Every operator, value type, field type and built-in variable is named in the schema reference."""
    text = SCHEMA_DOC.read_text(encoding="utf-8")
    names = [*OPERATORS, *VALUE_TYPES, *FIELD_TYPES, *BUILTIN_NAMES, "NXS", "SC", "VALUE"]
    missing = [name for name in names if not _mentioned(text, name)]
    assert not missing, f"not documented in {SCHEMA_DOC.name}: {missing}"


def test_schema_doc_mentions_every_schema_key() -> None:
    """Every key a schema file, variable, item or sample_attachment accepts is named in the reference."""
    text = SCHEMA_DOC.read_text(encoding="utf-8")
    models = (Schema, NexusVariable, ScicatVariable, ValueVariable, MetadataItem, SampleAttachment, ScicatJob)
    missing = sorted({key for model in models for key in _schema_keys(model) if not _mentioned(text, key)})
    assert not missing, f"schema keys not documented in {SCHEMA_DOC.name}: {missing}"


def test_config_doc_mentions_every_config_key() -> None:
    """Every key of the Config model, at any depth, appears with its dotted path in configuration.md."""
    text = CONFIG_DOC.read_text(encoding="utf-8")
    keys = _config_keys(Config)
    assert "scicat.api_endpoints.samples" in keys and "queue.metrics_port" in keys
    missing = [key for key in keys if not _mentioned(text, key)]
    assert not missing, f"config keys not documented in {CONFIG_DOC.name}: {missing}"


def test_config_doc_mentions_environment_variables() -> None:
    """Every environment variable the config loader reads is documented."""
    text = CONFIG_DOC.read_text(encoding="utf-8")
    for name in (CONFIG_ENV, BROKER_URL_ENV, TOKEN_ENV, PASSWORD_ENV):
        assert _mentioned(text, name), name


@pytest.mark.parametrize("path", CONFIG_FILES, ids=[path.name for path in CONFIG_FILES])
def test_shipped_config_files_load(path: Path) -> None:
    """Each config/*.yml loads with load_config and its schemas (and fallback) load cleanly."""
    config = load_config(path)
    fallback = config.ingestion.fallback_schema_file_path
    loaded = load_schemas(config.schemas_dir, config.resolve(fallback) if fallback else None)
    assert loaded.schemas and not loaded.broken, [broken.message for broken in loaded.broken]


def test_config_files_exist() -> None:
    """The production example and the upstream-compatible config are both shipped."""
    names = {path.name for path in CONFIG_FILES}
    assert {"offline-ingestor.example.yml", "upstream-compatible.yml"} <= names


def test_whole_schemas_in_schema_doc_are_valid(tmp_path: Path) -> None:
    """Every yaml block of schema-language.md that is a whole schema loads with load_schema_file."""
    blocks = [
        block
        for block in _yaml_blocks(SCHEMA_DOC)
        if re.search(r"^schema:", block, re.MULTILINE) and re.search(r"^variables:", block, re.MULTILINE)
    ]
    assert blocks, "the schema reference has no complete example schema"
    for index, block in enumerate(blocks):
        path = tmp_path / f"doc-example-{index}.imsc.yml"
        path.write_text(block, encoding="utf-8")
        load_schema_file(path)


def test_yaml_snippets_in_config_doc_are_valid_configs() -> None:
    """Every yaml block of configuration.md is a valid (partial) config and the full example is the file."""
    blocks = _yaml_blocks(CONFIG_DOC)
    assert blocks
    for block in blocks:
        parse_config(yaml.safe_load(block))
    example = (ROOT / "config" / "offline-ingestor.example.yml").read_text(encoding="utf-8")
    assert example in blocks, "docs/configuration.md must show config/offline-ingestor.example.yml verbatim"
