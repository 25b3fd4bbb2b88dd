"""Configuration: the ESS ingestor's YAML format, validated, plus our additions.

Existing ESS config files load unchanged: every upstream key is accepted (the ``kafka`` and
``health_check`` sections are read and ignored). Unknown keys, wrong types and missing
required values fail at start-up with one message naming the key. Secrets can come from the
file, from ``*_file`` keys or from environment variables; they are never logged
(``SecretStr``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from .config_paths import BROKER_URL_ENV, CONFIG_ENV, PASSWORD_ENV, TOKEN_ENV, config_source, resolve_from
from .errors import ConfigError

#: The file-list checksum algorithms (``files/checksums.py`` implements them).
#: blake2b is upstream's (and the default); blake3 is ours: hashed on every core (files/checksums.py).
Algorithm = Literal["blake2b", "sha256", "md5", "blake3"]

__all__ = ["BROKER_URL_ENV", "CONFIG_ENV", "Config", "load_config"]


#: Used when a file says ``timeout: 0`` (upstream's default, which makes every call fail).
DEFAULT_TIMEOUT_S = 30.0


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetOptions(_Section):
    allow_dataset_pid: bool = True
    generate_dataset_pid: bool = False
    dataset_pid_prefix: str = "20.500.12269"
    default_instrument_id: str = ""
    default_proposal_id: str = ""
    default_owner_group: str = ""
    default_access_groups: list[str] = Field(default_factory=list)


class FileHandlingOptions(_Section):
    compute_file_stats: bool = True
    compute_file_hash: bool = True
    file_hash_algorithm: Algorithm = "blake2b"
    save_file_hash: bool = True
    hash_file_extension: str = "b2b"
    ingestor_files_directory: str = "../ingestor"
    message_to_file: bool = True  # ignored: the online ingestor's (it writes the message file)
    message_file_extension: str = "message.json"  # ignored: the online ingestor's (it names the message file)
    file_path_type: Literal["relative", "absolute"] = "relative"
    data_directory: str = ""  # ignored: upstream's, unused by its offline ingestor too
    data_file_open_max_tries: int = Field(3, ge=1)  # ignored: a locked file is retried by the queue
    data_file_open_retry_delay: list[float] = Field(
        default_factory=list
    )  # ignored: as data_file_open_max_tries


class NexusReadingOptions(_Section):
    """Ours: bounds on what reading one file's metadata may cost (hostile or broken files)."""

    #: Bytes one NeXus value may take in memory (fixed-size types are checked before reading).
    max_value_bytes: int = Field(1_000_000, ge=1)
    #: Bytes all values read from one file may take together.
    max_file_bytes: int = Field(16_000_000, ge=1)
    #: Datasets one wildcard path may match (``/entry/user_*/name``).
    max_wildcard_matches: int = Field(1000, ge=1)
    #: Seconds the extract step may spend reading one file.
    time_limit_s: float = Field(120.0, gt=0)
    #: Read the file in a child process, so that a libhdf5 crash (segfault) or a runaway
    #: read ends the child, not the command: ``auto`` = in synchronous commands
    #: (``ingest-now``, the drop-in), ``always``, ``never``.
    isolate: Literal["auto", "always", "never"] = "auto"
    #: Address-space limit of that child process, MiB (0 = none).
    child_memory_mb: int = Field(2048, ge=0)


class IngestionOptions(_Section):
    dry_run: bool = False
    # The online ingestor's (how it spawns us); ignored here.
    offline_ingestor_executable: list[str] | str = Field(
        default_factory=lambda: ["scicat_background_ingestor"]
    )
    max_offline_ingestors: int = 10  # ignored: the online ingestor's
    offline_ingestors_wait_time: float = 10  # ignored: the online ingestor's
    schemas_directory: str = "schemas"
    fallback_schema_file_path: str = ""
    check_if_dataset_exists_by_pid: bool = True
    check_if_dataset_exists_by_metadata: bool = True
    check_if_dataset_exists_by_metadata_key: str = "job_id"
    #: Ours: files outside these directories are refused (empty list = no restriction).
    allowed_data_roots: list[str] = Field(default_factory=list)
    file_handling: FileHandlingOptions = Field(default_factory=FileHandlingOptions)
    nexus_reading: NexusReadingOptions = Field(default_factory=NexusReadingOptions)


class LoggingOptions(_Section):
    """Upstream's section; only ``logging_level`` and our ``format`` are read (structlog to
    stderr: a supervisor or container runtime collects it). The rest is accepted and ignored."""

    verbose: bool = False
    file_log: bool = False
    file_log_base_name: str = "scicat_ingestor_log"
    file_log_timestamp: bool = False
    logging_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_message_prefix: str = "SFI"
    system_log: bool = False
    system_log_facility: str = "mail"
    graylog: bool = False
    graylog_host: str = ""
    graylog_port: str | int = ""
    graylog_facility: str = "scicat.ingestor"
    #: Ours: ``auto`` = readable console on a terminal, JSON otherwise.
    format: Literal["auto", "json", "console"] = "auto"


class ApiEndpointsOptions(_Section):
    datasets: str = "datasets"
    proposals: str = "proposals"  # ignored: schemas name their own look-up URLs
    origdatablocks: str = "origdatablocks"
    #: ``post-job`` (a schema's ``scicat_job``): under the API root of ``api_version``.
    jobs: str = "jobs"
    instruments: str = "instruments"  # ignored: as proposals
    samples: str = "samples"


class ScicatOptions(_Section):
    host: str = "https://scicat.host"
    token: SecretStr = SecretStr("")
    additional_headers: dict[str, str] = Field(default_factory=dict)
    timeout: float = DEFAULT_TIMEOUT_S
    stream: bool = True  # ignored: answers are small JSON documents
    #: TLS verification is on unless a file turns it off explicitly.
    verify: bool = True
    health_endpoint: str = "health"
    api_endpoints: ApiEndpointsOptions = Field(default_factory=ApiEndpointsOptions)
    # Ours below.
    api_version: Literal["v3", "v4"] = "v3"
    username: str = ""
    password: SecretStr = SecretStr("")
    token_file: str = ""
    password_file: str = ""
    max_retries: int = Field(4, ge=0)
    backoff_s: float = Field(0.5, ge=0)
    backoff_max_s: float = Field(30.0, gt=0)
    validate_before_write: bool = False
    #: Requests per second to SciCat from one process; 0 = unlimited.
    rate_limit_per_s: float = Field(0.0, ge=0)
    #: Seconds a process reuses a schema variable's SciCat GET (proposal, instruments,
    #: samples); 0 = ask SciCat for every file (scicat/lookups.py).
    lookup_cache_ttl_s: float = Field(60.0, ge=0)
    #: While SciCat is down (queue/scicat_breaker.py) its health is probed after this many
    #: seconds, doubling per failed probe up to ``outage_probe_max_s``: the longest a worker
    #: can take to notice that SciCat is back. One GET /health per probe for the whole
    #: deployment (the breaker is shared), so a short ceiling costs nothing.
    outage_probe_s: float = Field(1.0, gt=0)
    outage_probe_max_s: float = Field(10.0, gt=0)
    #: Seconds a command's process (``ingest-now``, the drop-in) reuses what an earlier one
    #: asked SciCat about this account (groups, read rights, whether pids are kept), from a
    #: private file in ``learned_state_dir``; 0 = ask in every process (scicat/learned.py).
    learned_state_ttl_s: float = Field(900.0, ge=0)
    #: Where those files live; empty = ``$XDG_CACHE_HOME/offline-ingestor`` (``~/.cache/...``).
    learned_state_dir: str = ""

    @field_validator("timeout")
    @classmethod
    def _positive_timeout(cls, value: float) -> float:
        return value if value > 0 else DEFAULT_TIMEOUT_S

    @property
    def api_base(self) -> str:
        """The versioned API root, e.g. ``https://scicat/api/v3``.

        ``host`` may be given with or without ``/api`` or ``/api/vN`` (upstream files use
        ``.../api/v3``); ``api_version`` decides the version.
        """
        base = self.host.rstrip("/")
        for suffix in ("/api/v3", "/api/v4", "/api"):
            if base.endswith(suffix):
                base = base[: -len(suffix)]
                break
        return f"{base}/api/{self.api_version}"

    @property
    def v3_base(self) -> str:
        """The v3 root: login (there is no ``/api/v4/auth/login``) and look-ups live there."""
        return self.api_base.rsplit("/", 1)[0] + "/v3"


class SentinelOptions(_Section):
    """Redis Sentinel (``queue.sentinel``): the broker and job store follow the master."""

    #: The name the sentinels monitor the master under (``sentinel monitor NAME ...``).
    master_name: str
    #: ``host:port`` of each sentinel; empty = taken from a ``sentinel://`` broker_url.
    sentinels: list[str] = Field(default_factory=list)
    #: Password of the Redis master/replicas (``requirepass``); a URL password also works.
    password: SecretStr = SecretStr("")
    #: ACL user for the master/replicas, if not ``default``.
    username: str = ""
    #: Password of the sentinels themselves (``requirepass`` in sentinel.conf), if any.
    sentinel_password: SecretStr = SecretStr("")
    db: int = Field(0, ge=0)
    #: A producer reports a file queued once this many replicas hold it (Redis WAIT), so a
    #: failover right after cannot lose it; 0 = do not wait.
    wait_replicas: int = Field(1, ge=0)
    wait_timeout_ms: int = Field(1000, ge=1)


class QueueOptions(_Section):
    enabled: bool = False
    broker_url: str = "redis://127.0.0.1:6379/0"
    queue_name: str = "ingest"
    concurrency: int = Field(2, ge=1)
    max_retries: int = Field(8, ge=0)
    #: First retry waits about this long; each further retry doubles it (with jitter).
    retry_backoff_s: float = Field(2.0, gt=0)
    retry_backoff_max_s: int = Field(300, ge=1)
    #: Seconds a late-acked message may stay unacked before Redis redelivers it.
    visibility_timeout_s: int = Field(4 * 3600, ge=2)
    #: Hard per-task limit; must stay below the visibility timeout (checked below).
    task_time_limit_s: int = Field(3 * 3600, ge=1)
    max_redeliveries: int = Field(3, ge=0)
    state_ttl_s: int = Field(7 * 86400, ge=60)
    lease_ttl_s: int = Field(3 * 3600 + 600, ge=10)
    heartbeat_file: str = ""
    #: Liveness (issue 22): each worker process renews a Redis key this often ...
    heartbeat_interval_s: float = Field(5.0, gt=0)
    #: ... which expires this long after its last renewal: a dead process's leases are free then.
    heartbeat_ttl_s: float = Field(30.0, gt=0)
    #: The elected reconciler's pass interval (restore dead workers' deliveries, resume stuck files).
    reconcile_interval_s: float = Field(10.0, gt=0)
    #: A file the reconciler finds without message nor running process more often than this fails.
    max_resumes: int = Field(5, ge=0)
    #: A file queued or running longer than this is "stuck" for status and the age metric.
    stuck_after_s: float = Field(3600.0, gt=0)
    metrics_port: int = Field(0, ge=0)
    #: On SIGTERM running steps get this long to finish; then they are abandoned and their
    #: messages requeued at once (worker/stop.py). Keep it below the container's stop grace:
    #: abandoning takes ~3 s on a loaded 2-core host (tests/worker/test_bounded_stop.py), so
    #: 20 leaves Kubernetes' default 30 s a margin of about 7 s (25 exited at 28.8 s).
    shutdown_grace_s: float = Field(20.0, ge=0)
    #: Celery task events (task-sent/received/started/succeeded) for Flower and
    #: celery-exporter. On by default so those tools work; they cost about 4 % of small-file
    #: throughput (more consumer CPU, bench/RESULTS.md), so a site without them may turn
    #: them off; our own /metrics needs none of them.
    task_events: bool = True
    #: Queue of the three SciCat write steps, served by ``offline-ingestor worker --io`` (a
    #: thread pool of ``io_concurrency``): steps that wait on SciCat then hold no process.
    #: Empty: every step on ``queue_name``.
    io_queue_name: str = ""
    io_concurrency: int = Field(16, ge=1)
    #: build-dataset of a file of at least this many bytes goes to ``io_queue_name`` too: its
    #: hashing (GIL released) then runs in an I/O thread, not in a prefork process that small
    #: files behind it need. 0 (or no ``io_queue_name``): every build-dataset on ``queue_name``.
    io_hash_min_bytes: int = Field(0, ge=0)
    #: Producers write requests here when Redis cannot take them and enqueue them when it
    #: answers again (queue/spool.py). Empty = no spool: enqueue exits 75 while Redis is down.
    spool_dir: str = ""
    #: The spool refuses new requests (exit 75, "spool full") beyond this many files.
    spool_max_files: int = Field(100_000, ge=1)
    #: How often a worker tries to enqueue spooled requests (0 = never; producers still do).
    spool_flush_interval_s: float = Field(10.0, ge=0)
    #: Redis Sentinel instead of one Redis host (then broker_url may be ``sentinel://...``).
    sentinel: SentinelOptions | None = None

    @field_validator("broker_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        # Checked here, once: a mistyped URL otherwise surfaces deep in kombu or redis-py as
        # a long traceback from every command (the message never quotes it: a password).
        for part in value.split(";"):
            _check_broker_url(part.strip())
        return value


class HealthCheckOptions(_Section):
    """Accepted for compatibility and ignored: ``offline-ingestor health`` and the worker's
    heartbeat file are the checks (docs/operations.md)."""

    host: str = "0.0.0.0"
    port: int = 8080


class KafkaOptions(BaseModel):
    """Accepted for compatibility and ignored: we are fed by Redis, not Kafka."""

    model_config = ConfigDict(extra="allow", frozen=True)


class Config(_Section):
    """The whole configuration file."""

    # Upstream's command-line values as keys; ignored (the drop-in takes them as flags).
    nexus_file: str = ""
    done_writing_message_file: str = ""
    config_file: str = ""
    id: str = ""
    dataset: DatasetOptions = Field(default_factory=DatasetOptions)
    ingestion: IngestionOptions = Field(default_factory=IngestionOptions)
    kafka: KafkaOptions = Field(default_factory=KafkaOptions)
    logging: LoggingOptions = Field(default_factory=LoggingOptions)
    scicat: ScicatOptions = Field(default_factory=ScicatOptions)
    health_check: HealthCheckOptions = Field(default_factory=HealthCheckOptions)
    queue: QueueOptions = Field(default_factory=QueueOptions)
    #: Where the file was read from; relative paths in it resolve against its folder.
    source_path: str = ""

    def resolve(self, path: str) -> Path:
        """Resolve a path from the config relative to the config file's folder."""
        return resolve_from(self.source_path, path)

    @property
    def schemas_dir(self) -> Path:
        return self.resolve(self.ingestion.schemas_directory)

    def as_dry_run(self) -> Config:
        """This config with ``ingestion.dry_run`` on (a command's ``--dry-run``)."""
        return self.model_copy(update={"ingestion": self.ingestion.model_copy(update={"dry_run": True})})


#: Keys whose values are never printed, wherever they sit in the file.
_SECRET_WORDS = ("password", "token", "secret", "credential", "key")


def _echoable(loc: tuple[Any, ...], value: Any) -> bool:
    """Whether a bad value may be shown: never a secret's, never a whole section's."""
    names = [str(part).lower() for part in loc]
    if any(word in name for name in names for word in _SECRET_WORDS) or "broker_url" in names:
        return False
    return not isinstance(value, dict | list)


def _yaml_error(path: str, exc: yaml.YAMLError) -> str:
    """Problem and line only: PyYAML's own text quotes the offending line (a password)."""
    mark = getattr(exc, "problem_mark", None)
    line = f":{mark.line + 1}" if mark is not None else ""
    problem = getattr(exc, "problem", None) or "cannot parse"
    return f"config {path}{line}: invalid YAML: {problem}"


#: What both Celery's Redis transport and redis-py read (``sentinel://`` only with ``queue.sentinel``).
BROKER_SCHEMES = ("redis", "rediss", "sentinel")


def _check_broker_url(url: str) -> None:
    """Raise ValueError naming what is wrong with one Redis URL, never the URL itself."""
    scheme, sep, _ = url.partition("://")
    if not sep:
        raise ValueError("not a URL: use redis://[:password@]host:port/db")
    if scheme.lower() not in BROKER_SCHEMES:
        raise ValueError(f"unknown scheme {scheme + '://'!r}: use redis://, rediss:// or sentinel://")
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018  (raises ValueError for a port that is not a number)
    except ValueError:
        raise ValueError("the port is not a number from 0 to 65535") from None
    db = parts.path.strip("/")
    if db and not db.isdigit():
        raise ValueError(f"the database must be a number (got {db!r})")


def _format_validation_error(path: str, error: ValidationError) -> str:
    first = error.errors()[0]
    key = ".".join(str(part) for part in first["loc"]) or "<top level>"
    message = first["msg"].removeprefix("Value error, ")
    if key == "queue.broker_url" and os.environ.get(BROKER_URL_ENV):
        key = f"queue.broker_url (${BROKER_URL_ENV})"
    if first["type"] == "extra_forbidden":
        message = "unknown key"
    elif "input" in first and first["type"] != "missing" and _echoable(first["loc"], first["input"]):
        message = f"{message} (got {first['input']!r})"
    more = len(error.errors()) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"config {path}: {key}: {message}{suffix}"


def _read_secret_file(path: str, key: str) -> str:
    try:
        return Path(path).expanduser().read_text().strip()
    except OSError as exc:
        raise ConfigError(f"config: scicat.{key}: cannot read {path}: {exc.strerror}") from exc


def _apply_environment(data: dict[str, Any]) -> dict[str, Any]:
    scicat = dict(data.get("scicat") or {})
    if token := os.environ.get(TOKEN_ENV):
        scicat["token"] = token
    elif scicat.get("token_file"):
        scicat["token"] = _read_secret_file(scicat["token_file"], "token_file")
    if password := os.environ.get(PASSWORD_ENV):
        scicat["password"] = password
    elif scicat.get("password_file"):
        scicat["password"] = _read_secret_file(scicat["password_file"], "password_file")
    queue = dict(data.get("queue") or {})
    if broker := os.environ.get(BROKER_URL_ENV):
        queue["broker_url"] = broker
    return {**data, "scicat": scicat, "queue": queue}


def parse_config(data: Any, source: str = "<dict>") -> Config:
    """Validate a parsed YAML document into a :class:`Config`."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config {source}: top level must be a mapping, got {type(data).__name__}")
    data = _apply_environment(data)
    try:
        config = Config.model_validate({**data, "source_path": source if source != "<dict>" else ""})
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(source, exc)) from None
    if config.queue.retry_backoff_max_s >= config.queue.visibility_timeout_s:
        raise ConfigError(
            f"config {source}: queue.retry_backoff_max_s ({config.queue.retry_backoff_max_s}) must be "
            f"below queue.visibility_timeout_s ({config.queue.visibility_timeout_s}): a retry waits "
            "unacked and would be delivered twice"
        )
    if config.queue.heartbeat_interval_s >= config.queue.heartbeat_ttl_s:
        raise ConfigError(
            f"config {source}: queue.heartbeat_interval_s ({config.queue.heartbeat_interval_s}) must be "
            f"below queue.heartbeat_ttl_s ({config.queue.heartbeat_ttl_s}), or live workers look dead"
        )
    if config.queue.task_time_limit_s >= config.queue.visibility_timeout_s:
        raise ConfigError(
            f"config {source}: queue.task_time_limit_s ({config.queue.task_time_limit_s}) must be "
            f"below queue.visibility_timeout_s ({config.queue.visibility_timeout_s}), or Redis "
            "redelivers running tasks"
        )
    return config


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Read and validate the config file (``path``, else ``$OFFLINE_INGESTOR_CONFIG``)."""
    chosen = str(path) if path else os.environ.get(CONFIG_ENV, "")
    if not chosen:
        raise ConfigError(f"no config file: pass --config or set {CONFIG_ENV}")
    try:
        text = Path(chosen).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"config {chosen}: cannot read: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(_yaml_error(chosen, exc)) from None
    return parse_config(data, config_source(chosen))
