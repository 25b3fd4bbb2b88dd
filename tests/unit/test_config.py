"""Configuration loading: upstream files, validation messages, secrets and derived values."""

from __future__ import annotations

from pathlib import Path

import pytest

from offline_ingestor.config import (
    BROKER_URL_ENV,
    DEFAULT_TIMEOUT_S,
    PASSWORD_ENV,
    TOKEN_ENV,
    Config,
    load_config,
    parse_config,
)
from offline_ingestor.errors import ConfigError


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (TOKEN_ENV, PASSWORD_ENV, BROKER_URL_ENV, "OFFLINE_INGESTOR_CONFIG"):
        monkeypatch.delenv(name, raising=False)


def write(tmp_path: Path, text: str, name: str = "config.yml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# -- upstream files --------------------------------------------------------------------------


@pytest.mark.reference
def test_upstream_sample_config_loads_unchanged(reference: Path) -> None:
    """resources/config.sample.yml loads with its kafka and health_check sections."""
    config = load_config(reference / "scicat-ingestor/resources/config.sample.yml")
    assert config.scicat.host == "https://scicat.host"
    assert config.dataset.default_access_groups == ["ACCESS_GROUP_1"]
    assert config.ingestion.file_handling.ingestor_files_directory == "../ingestor"
    assert config.health_check.port == 8080
    assert config.kafka.model_extra is not None
    assert config.kafka.model_extra["bootstrap_servers"] == "localhost:9093"


@pytest.mark.reference
def test_upstream_sample_timeout_zero_becomes_default(reference: Path) -> None:
    """The sample's `timeout: 0` (which would make every call fail) becomes 30 s."""
    config = load_config(reference / "scicat-ingestor/resources/config.sample.yml")
    assert config.scicat.timeout == DEFAULT_TIMEOUT_S == 30.0


@pytest.mark.reference
def test_upstream_integration_template_loads_unchanged(reference: Path) -> None:
    """tests/integration/ingestor.config.yml.template loads, placeholders kept as strings."""
    path = reference / "scicat-ingestor/tests/integration/ingestor.config.yml.template"
    config = load_config(path)
    assert config.ingestion.schemas_directory == "<SCHEMAS_DIRECTORY>"
    assert config.ingestion.file_handling.file_path_type == "absolute"
    assert config.ingestion.file_handling.data_file_open_retry_delay == [3, 5, 10]
    assert config.scicat.token.get_secret_value() == "<VALID_TOKEN_HERE>"
    assert config.scicat.timeout == 30


@pytest.mark.reference
def test_upstream_invalid_config_names_the_unknown_nested_key(reference: Path) -> None:
    """An unknown key inside ingestion.file_handling is refused, naming its full path."""
    with pytest.raises(ConfigError) as caught:
        load_config(reference / "scicat-ingestor/tests/resources/invalid_config.yml")
    assert "ingestion.file_handling.some_random_field" in str(caught.value)
    assert "unknown key" in str(caught.value)


# -- validation messages ---------------------------------------------------------------------


def test_unknown_top_level_key_is_refused(tmp_path: Path) -> None:
    """An unknown top-level key fails at start-up instead of being dropped."""
    with pytest.raises(ConfigError, match=r"bogus: unknown key"):
        load_config(write(tmp_path, "bogus: 1\n"))


def test_wrong_type_names_key_and_value(tmp_path: Path) -> None:
    """A value of the wrong type is reported with its key and the offending value."""
    path = write(tmp_path, "queue:\n  concurrency: lots\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert "queue.concurrency" in message
    assert "'lots'" in message
    assert str(path.resolve()) in message


def test_wrong_literal_value_names_key_and_value(tmp_path: Path) -> None:
    """An unsupported hash algorithm is reported with its key and value."""
    path = write(tmp_path, "ingestion:\n  file_handling:\n    file_hash_algorithm: crc32\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "ingestion.file_handling.file_hash_algorithm" in str(caught.value)
    assert "crc32" in str(caught.value)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    """A config path that does not exist is reported as unreadable, naming it."""
    missing = tmp_path / "nope.yml"
    with pytest.raises(ConfigError, match=r"nope\.yml: cannot read"):
        load_config(missing)


def test_no_config_path_at_all_is_a_config_error() -> None:
    """Without a path or $OFFLINE_INGESTOR_CONFIG the error says how to give one."""
    with pytest.raises(ConfigError, match="OFFLINE_INGESTOR_CONFIG"):
        load_config(None)


def test_config_path_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """$OFFLINE_INGESTOR_CONFIG is used when no path is passed."""
    monkeypatch.setenv("OFFLINE_INGESTOR_CONFIG", str(write(tmp_path, "id: from-env\n")))
    assert load_config().id == "from-env"


def test_broken_yaml_is_a_config_error_on_one_line(tmp_path: Path) -> None:
    """Invalid YAML is reported as such, in a single-line message."""
    path = write(tmp_path, "scicat:\n  host: [unclosed\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "invalid YAML" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    """A YAML list at the top level is refused with the type found."""
    with pytest.raises(ConfigError, match="top level must be a mapping, got list"):
        load_config(write(tmp_path, "- a\n- b\n"))


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    """An empty config file is valid and yields the defaults."""
    config = load_config(write(tmp_path, ""))
    assert config.scicat.verify is True
    assert config.queue.broker_url == "redis://127.0.0.1:6379/0"


def test_negative_timeout_also_becomes_default() -> None:
    """Any non-positive timeout is replaced by the default."""
    assert parse_config({"scicat": {"timeout": -5}}).scicat.timeout == DEFAULT_TIMEOUT_S


def test_positive_timeout_is_kept() -> None:
    """A positive timeout is used as given."""
    assert parse_config({"scicat": {"timeout": 12.5}}).scicat.timeout == 12.5


# -- secrets ---------------------------------------------------------------------------------


def test_token_from_environment_overrides_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """OFFLINE_INGESTOR_SCICAT_TOKEN wins over the token in the file."""
    monkeypatch.setenv(TOKEN_ENV, "env-token")
    config = parse_config({"scicat": {"token": "file-token"}})
    assert config.scicat.token.get_secret_value() == "env-token"


def test_password_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """OFFLINE_INGESTOR_SCICAT_PASSWORD sets scicat.password."""
    monkeypatch.setenv(PASSWORD_ENV, "env-pass")
    config = parse_config({"scicat": {"username": "ingestor"}})
    assert config.scicat.password.get_secret_value() == "env-pass"


def test_token_from_token_file_is_stripped(tmp_path: Path) -> None:
    """token_file is read and its trailing newline removed."""
    secret = write(tmp_path, "tok-from-file\n", "token")
    config = parse_config({"scicat": {"token_file": str(secret)}})
    assert config.scicat.token.get_secret_value() == "tok-from-file"


def test_password_from_password_file(tmp_path: Path) -> None:
    """password_file is read into scicat.password."""
    secret = write(tmp_path, "pw-from-file\n", "password")
    config = parse_config({"scicat": {"password_file": str(secret)}})
    assert config.scicat.password.get_secret_value() == "pw-from-file"


def test_environment_token_wins_over_token_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment variable beats token_file."""
    monkeypatch.setenv(TOKEN_ENV, "env-token")
    secret = write(tmp_path, "file-token", "token")
    config = parse_config({"scicat": {"token_file": str(secret)}})
    assert config.scicat.token.get_secret_value() == "env-token"


def test_unreadable_token_file_names_the_key(tmp_path: Path) -> None:
    """A token_file that cannot be read is a ConfigError naming scicat.token_file."""
    with pytest.raises(ConfigError, match=r"scicat\.token_file: cannot read"):
        parse_config({"scicat": {"token_file": str(tmp_path / "absent")}})


def test_secrets_never_appear_in_repr_str_or_json(monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither the token nor the password leaks through repr, str or JSON dumps."""
    monkeypatch.setenv(PASSWORD_ENV, "hunter2-password")
    config = parse_config({"scicat": {"token": "s3cret-token-value"}})
    for text in (repr(config), str(config), config.model_dump_json(), repr(config.scicat)):
        assert "s3cret-token-value" not in text
        assert "hunter2-password" not in text
    assert config.scicat.token.get_secret_value() == "s3cret-token-value"


# -- derived values --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "https://scicat.example.org",
        "https://scicat.example.org/",
        "https://scicat.example.org/api",
        "https://scicat.example.org/api/v3",
        "https://scicat.example.org/api/v3/",
        "https://scicat.example.org/api/v4",
    ],
)
def test_api_base_for_v3_whatever_the_host_suffix(host: str) -> None:
    """api_base/v3_base are the v3 roots whether host has /api, /api/vN or nothing."""
    scicat = parse_config({"scicat": {"host": host}}).scicat
    assert scicat.api_base == "https://scicat.example.org/api/v3"
    assert scicat.v3_base == "https://scicat.example.org/api/v3"


@pytest.mark.parametrize(
    "host",
    ["https://scicat.example.org", "https://scicat.example.org/api", "https://scicat.example.org/api/v3"],
)
def test_api_base_for_v4_keeps_login_on_v3(host: str) -> None:
    """With api_version v4 the API root is /api/v4 but login stays under /api/v3."""
    scicat = parse_config({"scicat": {"host": host, "api_version": "v4"}}).scicat
    assert scicat.api_base == "https://scicat.example.org/api/v4"
    assert scicat.v3_base == "https://scicat.example.org/api/v3"


def test_api_base_keeps_a_path_prefix() -> None:
    """A host served under a sub-path keeps that path in front of /api."""
    scicat = parse_config({"scicat": {"host": "http://proxy:8080/scicat/api/v3"}}).scicat
    assert scicat.api_base == "http://proxy:8080/scicat/api/v3"


def test_broker_url_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """OFFLINE_INGESTOR_BROKER_URL overrides queue.broker_url from the file."""
    monkeypatch.setenv(BROKER_URL_ENV, "redis://elsewhere:6380/2")
    config = parse_config({"queue": {"broker_url": "redis://file:6379/0"}})
    assert config.queue.broker_url == "redis://elsewhere:6380/2"


@pytest.mark.parametrize("limit", [3600, 7200])
def test_task_time_limit_must_be_below_visibility_timeout(limit: int) -> None:
    """A task limit equal to or above the visibility timeout is refused."""
    data = {"queue": {"visibility_timeout_s": 3600, "task_time_limit_s": limit}}
    with pytest.raises(ConfigError, match=r"task_time_limit_s .* must be below"):
        parse_config(data)


def test_task_time_limit_below_visibility_timeout_is_accepted() -> None:
    """A task limit just below the visibility timeout is fine."""
    config = parse_config({"queue": {"visibility_timeout_s": 3600, "task_time_limit_s": 3599}})
    assert config.queue.task_time_limit_s == 3599


def test_relative_schemas_directory_resolves_against_config_folder(tmp_path: Path) -> None:
    """A relative schemas_directory is taken from the config file's folder, not the CWD."""
    folder = tmp_path / "etc"
    folder.mkdir()
    config = load_config(write(folder, "ingestion:\n  schemas_directory: my-schemas\n"))
    assert config.schemas_dir == folder.resolve() / "my-schemas"


def test_absolute_schemas_directory_is_kept(tmp_path: Path) -> None:
    """An absolute schemas_directory is used as given."""
    target = tmp_path / "abs-schemas"
    config = load_config(write(tmp_path, f"ingestion:\n  schemas_directory: {target}\n"))
    assert config.schemas_dir == target


def test_config_sections_are_frozen() -> None:
    """A loaded config cannot be changed by accident."""
    config = Config()
    with pytest.raises(ValueError):
        config.scicat.host = "x"


def test_default_shutdown_grace_leaves_a_margin_under_kubernetes() -> None:
    """Kubernetes SIGKILLs 30 s after SIGTERM; abandoning the running steps takes ~3 s on a
    loaded host (measured in tests/worker/test_bounded_stop.py), so the default grace must
    leave room for it and more: 25 s made a worker exit at 28.8 s."""
    kubernetes_grace_s, abandon_s, margin_s = 30.0, 3.0, 5.0
    assert parse_config({}).queue.shutdown_grace_s + abandon_s + margin_s <= kubernetes_grace_s
