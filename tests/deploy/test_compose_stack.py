"""The compose stack works in meaning, not only in syntax: the worker runs with exactly the
compose file's mounts, secrets, tmpfs, read-only root, env, user and working directory, and
the README's commands ingest a file into the SciCat stand-in.

See container_view.py for how the container's view is rebuilt without a container engine.
"""

from __future__ import annotations

import base64
import contextlib
import os
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from container_view import ContainerView, can_build_views, compose_service, dockerfile, interpolate
from helpers import ROOT, ymir_file
from offline_ingestor.testing.processes import WorkerProcess, free_port, wait_for

pytestmark = [pytest.mark.redis, pytest.mark.worker]

CONFIG_TARGET = "/etc/offline-ingestor/config.yml"


def operator_config(tmp_path: Path, standin: Any, source: str) -> Path:
    """The mounted config with its CHANGE lines edited, as the README tells an operator."""
    data = yaml.safe_load((ROOT / source).read_text())
    data["scicat"]["host"] = standin.url_v3
    data["queue"]["metrics_port"] = free_port()  # the host's 9808 may be taken by anything
    path = tmp_path / "container.yml"
    path.write_text(yaml.safe_dump(data))
    path.chmod(0o644)
    return path


@pytest.fixture
def view(tmp_path: Path, standin: Any, redis_server: Any, data_root: Path) -> ContainerView:
    return service_view("worker", tmp_path, standin, redis_server, data_root)


def service_view(
    name: str, tmp_path: Path, standin: Any, redis_server: Any, data_root: Path, **shell_env: str
) -> ContainerView:
    """The compose service ``name``'s container, with the test's Redis, stand-in and data."""
    reason = can_build_views()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"cannot rebuild the container's view: {reason}")
        pytest.skip(f"cannot rebuild the container's view: {reason}")
    service, compose = compose_service(name)
    image = dockerfile()
    uid = int(image.user.partition(":")[0])
    secret = tmp_path / "scicat_password"
    secret.write_text("ingestorpw\n")  # what `printf ... > deploy/secrets/scicat_password` makes
    os.chown(secret, uid, uid)  # README: the file must be readable by the image's user
    secret.chmod(0o400)
    scratch = tmp_path / "tmpfs"
    scratch.mkdir(mode=0o1777)
    scratch.chmod(0o1777)
    data_root.chmod(0o755)
    (config_source,) = [v.split(":")[0] for v in service["volumes"] if v.split(":")[1] == CONFIG_TARGET]
    return ContainerView(
        service=service,
        compose=compose,
        image=image,
        shell_env={"DATA_ROOT": str(data_root), **shell_env},
        secret_files={"scicat_password": secret},
        tmpfs_dirs={"/tmp": scratch},
        source_overrides={config_source: operator_config(tmp_path, standin, config_source)},
        # The container reaches Redis as redis:6379; the test's Redis is elsewhere.
        env_overrides={"OFFLINE_INGESTOR_BROKER_URL": redis_server.url},
    )


def run(view: ContainerView, *args: str) -> subprocess.CompletedProcess[str]:
    """``docker compose run --rm worker ARGS`` in the container's view."""
    return subprocess.run(view.argv(list(args)), capture_output=True, text=True, timeout=120)


def test_config_paths_are_the_mounts(view: ContainerView) -> None:
    """The mounted config's paths point at the compose file's mounts and secrets."""
    mounts = {target: host for host, target, _ in view.mounts()}
    config = yaml.safe_load(mounts[CONFIG_TARGET].read_text())
    data_targets = [target for host, target, _ in view.mounts() if host == Path(view.shell_env["DATA_ROOT"])]
    assert config["ingestion"]["allowed_data_roots"] == data_targets == ["/data"]
    schemas = os.path.normpath(Path(CONFIG_TARGET).parent / config["ingestion"]["schemas_directory"])
    assert schemas in mounts and mounts[schemas] == ROOT / "schemas"
    assert config["scicat"]["password_file"] in [f"/run/secrets/{name}" for name in view.service["secrets"]]
    assert view.environment()["OFFLINE_INGESTOR_CONFIG"] == CONFIG_TARGET


def test_readme_commands_ingest_a_file_in_the_container_view(
    view: ContainerView, standin: Any, data_root: Path, tmp_path: Path
) -> None:
    """health passes, the worker starts, `enqueue /data/...` ingests the file once."""
    path = ymir_file(data_root, name="run-0001.hdf")
    in_container = "/data/" + str(path.relative_to(data_root))
    before = sorted(p for p in data_root.rglob("*"))

    health = run(view, "health")
    assert health.returncode == 0, health.stdout + health.stderr  # config, schemas, Redis, SciCat, roots

    worker = WorkerProcess(
        ROOT / "unused", tmp_path / "worker.log", view.tmpfs_dirs["/tmp"] / "offline-ingestor.alive"
    )
    worker.command = lambda: view.argv()  # type: ignore[method-assign]
    worker.start()
    try:
        queued = run(view, "enqueue", in_container)
        assert queued.returncode == 0 and queued.stdout.startswith("queued"), queued.stdout + queued.stderr
        wait_for(lambda: len(standin.origdatablocks) == 1, 60, "the origdatablock")
        liveness = run(view, "health", "--liveness")  # the image's HEALTHCHECK
        assert liveness.returncode == 0, liveness.stdout + liveness.stderr
    finally:
        worker.stop()
        print(worker.log.read_text(errors="replace")[-4000:])
    (dataset,) = standin.datasets.values()
    (block,) = standin.origdatablocks
    (entry,) = block["dataFileList"]  # the data file; no hash file (save_file_hash: false)
    assert entry["path"].endswith("run-0001.hdf") and entry["chk"]
    assert sorted(p for p in data_root.rglob("*")) == before  # /data is read-only: nothing written
    assert dataset["sourceFolder"].startswith("/data/")
    assert worker.process is not None and worker.process.returncode == 0


@contextlib.contextmanager
def compose_redis(tmp_path: Path, name: str = "redis") -> Iterator[redis.Redis]:
    """A redis-server started with the compose service's command, on a free loopback port."""
    service, _ = compose_service(name)
    command = [interpolate(part, {}) for part in service["command"]]
    port = free_port()
    process = subprocess.Popen(
        [*command, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(port=port)
        wait_for(lambda: _pong(client), 10, "redis-server")
        yield client
    finally:
        process.terminate()
        process.wait(10)


@pytest.mark.parametrize("name", ["redis", "redis-replica"])
def test_redis_limits_memory_so_noeviction_applies(tmp_path: Path, name: str) -> None:
    """Redis (and its replica, which becomes the primary after a failover) started with the
    compose command has a maxmemory, so noeviction refuses writes."""
    with compose_redis(tmp_path, name) as client:
        assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
        assert int(client.config_get("maxmemory")["maxmemory"]) > 0


def test_redis_keeps_a_queued_files_record_compact(tmp_path: Path) -> None:
    """On the compose Redis the record of a file queued with a long path (200 characters,
    beyond Redis's default 64) is a listpack, half the memory of a hash table."""
    from offline_ingestor.queue.job_store import JobStore, job_key

    with compose_redis(tmp_path) as client:
        path = "/data/" + "x" * 190 + ".hdf"
        JobStore(client).claim_for_queue({"key": "k-long", "file": path}, claim="c")
        assert client.object("encoding", job_key("k-long")) == b"listpack"


def _pong(client: Any) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def test_no_port_is_published_on_all_interfaces() -> None:
    """Flower and /metrics have no auth of their own: published on the host's loopback only."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"


def test_flower_uses_the_workers_broker_and_asks_for_its_login_everywhere(
    tmp_path: Path, standin: Any, redis_server: Any, data_root: Path
) -> None:
    """The flower service takes the broker from the worker's source (no URL of its own) and
    serves nothing, not even /metrics or /healthcheck, without FLOWER_BASIC_AUTH's login."""
    worker, _ = compose_service("worker")
    flower, _ = compose_service("flower")
    assert (
        flower["environment"]["OFFLINE_INGESTOR_BROKER_URL"]
        == worker["environment"]["OFFLINE_INGESTOR_BROKER_URL"]
    )
    assert (
        flower["environment"]["OFFLINE_INGESTOR_CONFIG"] == worker["environment"]["OFFLINE_INGESTOR_CONFIG"]
    )
    assert "redis://" not in " ".join(str(part) for part in flower.get("command", []))
    port = free_port()
    view = service_view(
        "flower", tmp_path, standin, redis_server, data_root, FLOWER_BASIC_AUTH="ops:flower-pw"
    )
    view.env_overrides.update({"FLOWER_PORT": str(port), "FLOWER_ADDRESS": "127.0.0.1"})
    log = (tmp_path / "flower.log").open("wb")
    process = subprocess.Popen(view.argv(), stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    login = "Basic " + base64.b64encode(b"ops:flower-pw").decode()

    def status(path: str, auth: bool) -> int:
        request = urllib.request.Request(base + path, headers={"Authorization": login} if auth else {})
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:
                return int(answer.status)
        except urllib.error.HTTPError as exc:
            return exc.code

    try:
        wait_for(lambda: _answers(base), 60, "Flower to listen")
        for path in ("/metrics", "/healthcheck", "/api/workers", "/"):
            assert status(path, auth=False) == 401, path
            assert status(path, auth=True) == 200, path
    finally:
        process.terminate()
        process.wait(20)
        log.close()
        print((tmp_path / "flower.log").read_text(errors="replace")[-3000:])


def _answers(base: str) -> bool:
    try:
        urllib.request.urlopen(base + "/healthcheck", timeout=2)
    except urllib.error.HTTPError:
        return True  # it answers (401)
    except OSError:
        return False
    return True


def test_the_build_context_is_what_the_dockerfile_copies() -> None:
    """.dockerignore lets in exactly the Dockerfile's COPY sources: no .venv, .git or secrets."""
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    patterns = [line for line in lines if line and not line.startswith("#")]
    assert patterns[0] == "*", "everything is excluded first, then the sources let in"
    allowed = {line[1:].rstrip("/") for line in patterns if line.startswith("!")}
    copied = set()
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(word.startswith("--from") for word in words):
            copied.update(word.rstrip("/") for word in words[1:-1] if not word.startswith("--"))
    assert allowed == copied


def test_readme_says_the_data_mount_must_be_readable_by_the_image_user() -> None:
    """The worker runs as the image's uid: a data tree only root may read fails every file."""
    uid = dockerfile().user.partition(":")[0]
    readme = (ROOT / "README.md").read_text()
    assert f"readable by uid {uid}" in readme and "DATA_ROOT" in readme
