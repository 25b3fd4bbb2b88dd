"""Upstream's one-flag-per-config-key options, parsed as upstream's argparse parser would."""

from __future__ import annotations

from offline_ingestor.config import parse_config
from offline_ingestor.dropin.upstream_args import apply_overrides, parse_upstream_args


def test_bools_values_and_lists() -> None:
    """A bool takes no value, a scalar one, a list all values up to the next flag."""
    parsed = parse_upstream_args(
        [
            "--logging.verbose",
            "--scicat.host",
            "http://h/api/v3",
            "--ingestion.allowed-data-roots",
            "/a",
            "/b",
            "--queue.concurrency=3",
            "--dataset.generate-dataset-pid",
        ]
    )
    assert parsed.ignored == []
    assert parsed.overrides == {
        "logging": {"verbose": True},
        "scicat": {"host": "http://h/api/v3"},
        "ingestion": {"allowed_data_roots": ["/a", "/b"]},
        "queue": {"concurrency": "3"},
        "dataset": {"generate_dataset_pid": True},
    }


def test_unknown_flags_and_their_values_are_ignored() -> None:
    """Flags for keys we do not have are reported, and their values do not leak elsewhere."""
    parsed = parse_upstream_args(
        ["--kafka.topics", "a,b", "--rabbitmq.enabled", "--scicat.additional-headers", "x"]
    )
    assert parsed.overrides == {}
    assert [flag.split()[0] for flag in parsed.ignored] == [
        "--kafka.topics",
        "--rabbitmq.enabled",
        "--scicat.additional-headers",
    ]


def test_overrides_are_validated_and_keep_the_rest() -> None:
    """Applied overrides go through the config's validation; other values and secrets stay."""
    config = parse_config({"scicat": {"password": "pw", "username": "u"}}, "/etc/oi.yml")
    changed = apply_overrides(config, parse_upstream_args(["--queue.concurrency", "3"]).overrides)
    assert changed.queue.concurrency == 3
    assert changed.scicat.password.get_secret_value() == "pw" and changed.scicat.username == "u"
    assert changed.source_path == "/etc/oi.yml"
