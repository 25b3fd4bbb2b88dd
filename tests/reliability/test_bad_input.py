"""Bad input through the queue: a clear failed-registry entry, the worker goes on, fix + requeue ingests.

One worker serves every case of the module (one Redis, one stand-in): all bad files are
enqueued at once, then a good file; then every cause is fixed and ``requeue --all`` run.
The worker runs without CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH (``setpriv``), so that even
as root a ``chmod 000`` file is unreadable to it, as it would be to the service account.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from helpers import ROOT, ingestor_cli, wait_for, ymir_file
from offline_ingestor.config import load_config
from offline_ingestor.ingest.job import new_job
from offline_ingestor.producer import submit_job
from offline_ingestor.testing import Fault, ScicatStandin, scenario
from offline_ingestor.testing.nexus_factory import write_ess_file, write_nexus
from offline_ingestor.testing.processes import RedisServer, WorkerProcess
from offline_ingestor.testing.pytest_plugin import ingestor_env
from offline_ingestor.testing.scenario import seeded_standin
from reliability.runs import failures, states, store_of

pytestmark = [pytest.mark.redis, pytest.mark.worker]

#: Cases `enqueue` itself refuses (checked at enqueue since issue 16).
REFUSED_AT_ENQUEUE = ("missing file", "directory")

SETPRIV = [
    "setpriv",
    "--bounding-set",
    "-dac_override,-dac_read_search",
    "--inh-caps",
    "-dac_override,-dac_read_search",
]
YMIR_SCHEMA = (ROOT / "schemas/ess-ymir.imsc.yml").read_text()
YMIR_SELECTOR = "    - filename:contains:/ymir/\n    - filename:contains:ymir"


class UnprivilegedWorker(WorkerProcess):
    """The worker run as a root without the capability to bypass file permissions."""

    def command(self) -> list[str]:
        return [*SETPRIV, *super().command()]


def schema_for(folder: str, schema_id: str, *, extra: str = "") -> str:
    """The YMIR schema, selecting files under ``/<folder>/`` instead, with another id."""
    text = YMIR_SCHEMA.replace("id: 3d0c1f5e-ymir-offline-ingestor", f"id: {schema_id}")
    return text.replace(YMIR_SELECTOR, f"    - filename:contains:/{folder}/") + extra


def dropped_caps_work() -> bool:
    probe = Path(f"/tmp/oi-perm-probe-{os.getpid()}")
    probe.write_text("x")
    probe.chmod(0)
    try:
        return (
            shutil.which("setpriv") is not None
            and os.geteuid() == 0
            and subprocess.run([*SETPRIV, "cat", str(probe)], capture_output=True).returncode != 0
        )
    finally:
        probe.unlink()


@dataclass
class Case:
    """One bad input: how to make it, what the registry must say, how to fix it."""

    name: str
    make: Callable[[Path], Path]
    error_class: str
    text: str
    fix: Callable[[Path], None]
    path: Path = field(default=Path())


def good(path: Path, **kwargs: Any) -> None:
    """Replace whatever is at ``path`` by a good ESS file."""
    if path.is_dir():
        path.rmdir()
    path.unlink(missing_ok=True)
    write_ess_file(path, proposal="876380", instrument="YMIR", **kwargs)


class Lock:
    """Another process holding the file open for writing (HDF5 file lock), like a file writer."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[str] | None = None

    def hold(self, path: Path) -> Path:
        good(path)
        code = (
            "import h5py, sys; f = h5py.File(sys.argv[1], 'a'); print('locked', flush=True); sys.stdin.read()"
        )
        self.process = subprocess.Popen(
            [sys.executable, "-c", code, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout and self.process.stdout.readline().strip() == "locked"
        return path

    def release(self, _: Path) -> None:
        if self.process and self.process.poll() is None:
            assert self.process.stdin
            self.process.stdin.close()
            self.process.wait(10)


def cases(data_root: Path, schemas: Path, standin: ScicatStandin) -> list[Case]:
    ymir = data_root / "ess/raw/ymir/2024/876380"
    ymir.mkdir(parents=True, exist_ok=True)
    lock = Lock()

    def at(name: str) -> Path:
        return ymir / name

    def truncated(path: Path) -> Path:
        ymir_file(data_root, name=path.name, extra={"/entry/padding": list(range(5000))})
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        return path

    def schema_case(folder: str) -> Path:
        return write_ess_file(data_root / f"ess/raw/{folder}/run.hdf", proposal="876380", instrument="YMIR")

    def write_schema(name: str, text: str) -> Callable[[Path], None]:
        return lambda _: (schemas / name).write_text(text)

    def bad_email(path: Path) -> Path:
        standin.add_proposal(
            {"proposalId": "999001", "pi_firstname": "No", "pi_lastname": "Mail", "pi_email": "not-an-email"}
        )
        return write_ess_file(path, proposal="999001", instrument="YMIR")

    def fix_email(_: Path) -> None:
        standin.add_proposal(
            {
                "proposalId": "999001",
                "pi_firstname": "No",
                "pi_lastname": "Mail",
                "pi_email": "no.mail@ess.example",
            }
        )

    (schemas / "broken-yaml.imsc.yml").write_text("id: broken\nselector: [unclosed\n")
    (schemas / "unknown-key.imsc.yml").write_text(
        schema_for("unknownkey", "unknown-key", extra="colour: red\n")
    )
    bad_op = schema_for("unknownop", "unknown-op").replace(
        "operator: join_with_space", "operator: frobnicate"
    )
    (schemas / "unknown-op.imsc.yml").write_text(bad_op)
    dup = schema_for("dupid", "3d0c1f5e-ymir-offline-ingestor").replace("order: 100", "order: 50")
    (schemas / "zz-duplicate-id.imsc.yml").write_text(dup)
    return [
        Case("missing file", lambda p: p, "InputFileError", "file not found", good, at("missing.hdf")),
        Case("directory", lambda p: p.mkdir() or p, "InputFileError", "is a directory", good, at("adir.hdf")),
        Case(
            "empty file", lambda p: p.touch() or p, "InputFileError", "file is empty", good, at("empty.hdf")
        ),
        Case(
            "not HDF5",
            lambda p: p.write_text("hello, not HDF5") and p,
            "InputFileError",
            "not an HDF5 file",
            good,
            at("text.hdf"),
        ),
        Case("truncated HDF5", truncated, "InputFileError", "HDF5 file", good, at("truncated.hdf")),
        Case(
            "still being written (HDF5 lock held)",
            lock.hold,
            "FileNotReady",
            "still open for writing",
            lock.release,
            at("writing.hdf"),
        ),
        Case(
            "permission denied",
            lambda p: good(p) or p.chmod(0) or p,
            "InputFileError",
            "permission denied",
            lambda p: p.chmod(0o644),
            at("secret.hdf"),
        ),
        Case(
            "missing NeXus path",
            lambda p: write_nexus(p, {"/entry/title": "x"}),
            "NexusReadError",
            "/entry/entry_identifier_uuid not found",
            good,
            at("no-uuid.hdf"),
        ),
        Case(
            "wrong type",
            lambda p: ymir_file(data_root, name=p.name, extra={"/entry/entry_identifier": "eleven"}),
            "VariableError",
            "run_number",
            good,
            at("wrong-type.hdf"),
        ),
        Case(
            "non-UTF-8 string",
            lambda p: ymir_file(data_root, name=p.name, extra={"/entry/title": b"caf\xe9"}),
            "NexusReadError",
            "not valid UTF-8",
            good,
            at("latin1.hdf"),
        ),
        Case(
            "huge string",
            lambda p: ymir_file(data_root, name=p.name, extra={"/entry/title": "x" * 1_100_000}),
            "NexusReadError",
            "exceeds",
            good,
            at("huge.hdf"),
        ),
        Case(
            "invalid date",
            lambda p: ymir_file(data_root, name=p.name, extra={"/entry/start_time": "last Tuesday"}),
            "VariableError",
            "cannot convert 'last Tuesday' to date",
            good,
            at("bad-date.hdf"),
        ),
        Case(
            "invalid email (from SciCat proposal)",
            bad_email,
            "VariableError",
            "not an email address",
            fix_email,
            at("bad-email.hdf"),
        ),
        Case(
            "broken YAML schema",
            lambda p: schema_case("brokenyaml"),
            "NoMatchingSchema",
            "invalid YAML",
            write_schema("broken-yaml.imsc.yml", schema_for("brokenyaml", "fixed-broken-yaml")),
        ),
        Case(
            "schema with unknown key",
            lambda p: schema_case("unknownkey"),
            "SchemaError",
            "unknown key",
            write_schema("unknown-key.imsc.yml", schema_for("unknownkey", "unknown-key")),
        ),
        Case(
            "schema with unknown operator",
            lambda p: schema_case("unknownop"),
            "SchemaError",
            "frobnicate",
            write_schema("unknown-op.imsc.yml", schema_for("unknownop", "unknown-op")),
        ),
        Case(
            "duplicate schema id",
            lambda p: schema_case("dupid"),
            "SchemaError",
            "duplicate schema id",
            write_schema(
                "zz-duplicate-id.imsc.yml",
                schema_for("dupid", "dup-fixed").replace("order: 100", "order: 50"),
            ),
        ),
        Case(
            "no matching schema",
            lambda p: schema_case("nomatch"),
            "NoMatchingSchema",
            "no schema selects",
            write_schema("nomatch.imsc.yml", schema_for("nomatch", "nomatch")),
        ),
    ]


@dataclass
class Run:
    config: Path
    worker: WorkerProcess
    standin: ScicatStandin
    cases: dict[str, Case]
    before_fix: dict[str, dict[str, Any]]
    good_file_ok: bool
    dropped_caps: bool
    fixed: dict[str, bool] = field(default_factory=dict)

    def requeue_fixed(self) -> dict[str, bool]:
        """Fix every cause, ``requeue --all``, wait: file -> ingested (once)."""
        if self.fixed:
            return self.fixed
        for case in self.cases.values():
            case.fix(case.path)
        result = ingestor_cli("requeue", "-c", str(self.config), "--all")
        assert result.returncode == 0, result.stdout + result.stderr
        wanted = {str(os.path.realpath(case.path)) for case in self.cases.values()}

        def done() -> bool:
            found = states(self.config)
            return all(found.get(path) in ("done", "failed") for path in wanted)

        wait_for(done, timeout=90, what="every requeued file")
        found = states(self.config)
        self.fixed = {
            name: found.get(str(os.path.realpath(c.path))) == "done" for name, c in self.cases.items()
        }
        return self.fixed


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """Enqueue every bad input and one good file into one worker; collect the failed registry."""
    tmp = tmp_path_factory.mktemp("bad-input")
    data_root, schemas = tmp / "data", tmp / "schemas"
    data_root.mkdir()
    schemas.mkdir()
    shutil.copy(ROOT / "schemas/ess-ymir.imsc.yml", schemas)
    (tmp / "redis").mkdir()
    redis_server = RedisServer(tmp / "redis").start()
    standin = seeded_standin().start()
    config = scenario.write_config(
        tmp / "worker.yml",
        standin.url_v3,
        data_root,
        ingestion={"schemas_directory": str(schemas), "fallback_schema_file_path": ""},
        scicat={"max_retries": 0},
        queue={
            "enabled": True,
            "broker_url": redis_server.url,
            "concurrency": 2,
            "heartbeat_file": str(tmp / "heartbeat"),
            "max_retries": 5,
            "retry_backoff_s": 0.1,
            "retry_backoff_max_s": 1,
            "visibility_timeout_s": 15,
            "task_time_limit_s": 12,
        },
    )
    all_cases = cases(data_root, schemas, standin)
    for case in all_cases:
        case.path = case.make(case.path)
    caps = dropped_caps_work()
    worker_class = UnprivilegedWorker if caps else WorkerProcess
    worker = worker_class(config, tmp / "worker.log", tmp / "heartbeat", env=ingestor_env()).start()
    try:
        # A missing path or a directory is refused by enqueue on the spot (exit 1, reported)...
        gone = [case for case in all_cases if case.name in REFUSED_AT_ENQUEUE]
        result = ingestor_cli("enqueue", "-c", str(config), *[str(case.path) for case in gone])
        assert result.returncode == 1 and result.stdout.count("refused") == len(gone), result.stdout
        # ...so they reach the worker as files that vanished after they were queued
        loaded = load_config(str(config))
        for case in gone:
            submit_job(new_job(case.path, loaded.ingestion.allowed_data_roots, must_exist=False), loaded)
        rest = [str(case.path) for case in all_cases if case.name not in REFUSED_AT_ENQUEUE]
        result = ingestor_cli("enqueue", "-c", str(config), *rest)
        assert result.returncode == 0, result.stdout + result.stderr
        wanted = {
            str(os.path.realpath(case.path)) for case in all_cases if case.name != "permission denied" or caps
        }
        wait_for(lambda: wanted <= set(failures(config)), timeout=120, what="every bad file in the registry")
        before = failures(config)
        # The worker is still alive and ingests a good file enqueued after all the bad ones
        good_file = ymir_file(data_root, name="good.hdf", job_id=str(uuid.uuid4()))
        ingestor_cli("enqueue", "-c", str(config), str(good_file))
        wait_for(lambda: len(standin.origdatablocks) == 1, timeout=30, what="the good file")
        yield Run(
            config,
            worker,
            standin,
            {c.name: c for c in all_cases},
            before,
            worker.process.poll() is None,
            caps,
        )
    finally:
        for case in all_cases:
            if case.name.startswith("still being written"):
                case.fix(case.path)
        worker.stop()
        print("--- worker log (last 30 lines)")
        print("\n".join(worker.log.read_text(errors="replace").splitlines()[-30:]))
        standin.stop()
        redis_server.stop(kill=True)


NAMES = [
    "missing file",
    "directory",
    "empty file",
    "not HDF5",
    "truncated HDF5",
    "still being written (HDF5 lock held)",
    "permission denied",
    "missing NeXus path",
    "wrong type",
    "non-UTF-8 string",
    "huge string",
    "invalid date",
    "invalid email (from SciCat proposal)",
    "broken YAML schema",
    "schema with unknown key",
    "schema with unknown operator",
    "duplicate schema id",
    "no matching schema",
]


@pytest.mark.parametrize("name", NAMES)
def test_bad_input_is_registered_and_reingestable(name: str, run: Run, figures: Any) -> None:
    """The bad file is in the failed registry with a clear message; after the fix, requeue ingests it."""
    case = run.cases[name]
    if name == "permission denied" and not run.dropped_caps:
        pytest.skip(
            "root bypasses file modes and setpriv cannot drop CAP_DAC_OVERRIDE here; unit tests cover it"
        )
    entry = run.before_fix[str(os.path.realpath(case.path))]
    # Then the registry names the class and a message a human can act on, and the worker went on
    assert entry["error_class"] == case.error_class, entry
    assert case.text in entry["message"], entry["message"]
    assert run.good_file_ok
    # When the cause is fixed and the file requeued, then it is ingested
    assert run.requeue_fixed()[name], failures(run.config).get(str(os.path.realpath(case.path)))
    figures(files=1, lost=0, duplicated=0)


def test_lock_released_while_retrying_is_ingested(
    standin: Any, fast_config: Any, start_worker: Any, data_root: Path, figures: Any
) -> None:
    """A file whose writer closes it while the worker retries (FileNotReady) is ingested without a failure."""
    lock = Lock()
    path = lock.hold(data_root / "ess/raw/ymir/2024/876380/writing.hdf")
    config = fast_config(queue={"max_retries": 30})
    start_worker(config)
    ingestor_cli("enqueue", "-c", str(config), str(path))
    wait_for(lambda: _retrying(config), what="a FileNotReady retry")
    lock.release(path)
    wait_for(lambda: len(standin.origdatablocks) == 1, what="the file after the writer closed it")
    assert not failures(config)
    figures(files=1, lost=0, duplicated=0)


def _retrying(config: Path) -> bool:
    return any(
        "still open for writing" in record.fields.get("last_error", "")
        for record in store_of(config).records()
    )


def test_path_outside_data_roots_is_refused(
    standin: Any, fast_config: Any, start_worker: Any, data_root: Path, tmp_path: Path, figures: Any
) -> None:
    """A path outside the data roots is refused at enqueue (exit 1) and by the worker if sent directly."""
    from offline_ingestor.config import load_config
    from offline_ingestor.producer import start_chain

    config = fast_config()
    start_worker(config)
    outside = ymir_file(tmp_path / "elsewhere")
    # When an operator enqueues it, then the CLI refuses loudly and nothing is queued
    result = ingestor_cli("enqueue", "-c", str(config), str(outside))
    assert result.returncode == 1 and "outside the allowed data roots" in result.stdout, result
    assert not list(store_of(config).records())
    # When a chain for it is put on the queue by other means, then the worker refuses it too
    job = {"file": str(outside), "key": "crafted", "job_id": None, "message_file": None}
    start_chain(job, load_config(config))
    wait_for(lambda: str(outside) in failures(config), what="the refusal in the failed registry")
    assert "outside the allowed data roots" in failures(config)[str(outside)]["message"]
    assert not standin.datasets
    # When the file is moved inside a data root, then it is ingested
    inside = data_root / "ess/raw/ymir/2024/876380/moved.hdf"
    inside.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(outside, inside)
    assert ingestor_cli("enqueue", "-c", str(config), str(inside)).returncode == 0
    wait_for(lambda: len(standin.origdatablocks) == 1, what="the moved file")
    figures(files=1, lost=0, duplicated=0)


NEST_400 = {"message": ["contactEmail must be an email"], "error": "Bad Request", "statusCode": 400}
V3_400 = {
    "status": 400,
    "message": json.dumps(
        [
            {
                "property": "ownerEmail",
                "children": [],
                "constraints": {"isEmail": "ownerEmail must be an email"},
            }
        ]
    ),
}


@pytest.mark.parametrize(
    ("fault", "status_text"),
    [
        pytest.param(
            Fault(method="POST", path_regex=r"/datasets$", status=400, body=NEST_400, times=None),
            "contactEmail must be an email",
            id="400-nest-shape",
        ),
        pytest.param(
            Fault(method="POST", path_regex=r"/datasets$", status=400, body=V3_400, times=None),
            "ownerEmail must be an email",
            id="400-v3-shape",
        ),
        pytest.param(
            Fault(
                method="POST",
                path_regex=r"/auth/login$",
                status=401,
                body={"message": "Unauthorized", "statusCode": 401},
                times=None,
            ),
            "login as 'ingestor' failed (401",
            id="401",
        ),
        pytest.param(
            Fault(
                method="POST",
                path_regex=r"/datasets$",
                status=403,
                body={"message": "Unauthorized to create this dataset.", "statusCode": 403},
                times=None,
            ),
            "Unauthorized to create this dataset",
            id="403",
        ),
    ],
)
def test_scicat_rejections(
    fault: Fault,
    status_text: str,
    standin: Any,
    fast_config: Any,
    start_worker: Any,
    data_root: Path,
    figures: Any,
) -> None:
    """SciCat 400 (both body shapes), 401, 403: not retried, SciCat's words registered, requeue works."""
    standin.inject(fault)
    config = fast_config()
    start_worker(config)
    path = ymir_file(data_root)
    ingestor_cli("enqueue", "-c", str(config), str(path))
    wait_for(lambda: str(path) in failures(config), what="the failed registry entry")
    entry = failures(config)[str(path)]
    assert entry["error_class"] in ("ScicatRejected", "ScicatAuthError"), entry  # login: ScicatAuthError
    assert status_text in entry["message"], entry
    assert entry["attempts"] == 1
    assert "ingestorpw" not in json.dumps(entry)
    # When SciCat is fixed and the file requeued, then it is ingested once
    standin.clear_faults()
    assert ingestor_cli("requeue", "-c", str(config), entry["key"]).returncode == 0
    wait_for(lambda: len(standin.origdatablocks) == 1, what="the file after requeue")
    assert len(standin.datasets) == 1
    figures(files=1, lost=0, duplicated=0)
