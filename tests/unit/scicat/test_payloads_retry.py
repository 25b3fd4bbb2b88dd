"""SciCat v3/v4 payload conversion and the retry policy."""

from __future__ import annotations

import random
from typing import Any

import pytest

from offline_ingestor.errors import (
    ConfigError,
    FileNotReady,
    PermanentError,
    QueueUnavailable,
    SchemaError,
    ScicatRejected,
    ScicatUnavailable,
    TransientError,
)
from offline_ingestor.ingest.retry import RetryPolicy
from offline_ingestor.scicat.payloads import for_api, missing_required

V3_DATASET: dict[str, Any] = {
    "pid": "20.500.12269/abc",
    "ownerGroup": "443503",
    "owner": "Anders",
    "contactEmail": "a@ess.eu",
    "sourceFolder": "/ess/data/coda/2024/443503",
    "creationTime": "2024-10-28T09:06:41.186000+00:00",
    "principalInvestigator": "Anders",
    "creationLocation": "ESS:CODA",
    "proposalId": "443503",
    "sampleId": "s-1",
    "instrumentId": "i-1",
    "version": "3",
}


# -- for_api v4 ------------------------------------------------------------------------------


def test_v4_turns_v3_scalars_into_lists() -> None:
    """v3 scalar fields become their v4 plural list fields."""
    converted = for_api(V3_DATASET, "v4")
    assert converted["principalInvestigators"] == ["Anders"]
    assert converted["proposalIds"] == ["443503"]
    assert converted["sampleIds"] == ["s-1"]
    assert converted["instrumentIds"] == ["i-1"]
    assert not {"principalInvestigator", "proposalId", "sampleId", "instrumentId"} & set(converted)


def test_v4_keeps_lists_given_for_v3_names() -> None:
    """A list under a v3 name is moved as is, not wrapped again."""
    converted = for_api({"sampleId": ["s-1", "s-2"]}, "v4")
    assert converted == {"sampleIds": ["s-1", "s-2"]}


def test_v4_drops_version() -> None:
    """The v3-only `version` field is dropped for v4."""
    assert "version" not in for_api(V3_DATASET, "v4")


def test_v4_fills_dataset_name_from_source_folder() -> None:
    """Without datasetName, v4 gets the last two components of sourceFolder."""
    assert for_api(V3_DATASET, "v4")["datasetName"] == "2024/443503"


def test_v4_keeps_given_dataset_name() -> None:
    """A datasetName from the schema is not replaced."""
    assert for_api({**V3_DATASET, "datasetName": "odin"}, "v4")["datasetName"] == "odin"


def test_v4_no_dataset_name_without_source_folder() -> None:
    """Without sourceFolder there is nothing to derive a datasetName from."""
    assert "datasetName" not in for_api({"owner": "x"}, "v4")


def test_v4_accepts_v4_names() -> None:
    """Fields already spelled the v4 way pass through unchanged."""
    dataset = {"proposalIds": ["p"], "principalInvestigators": ["a", "b"], "datasetName": "n"}
    assert for_api(dataset, "v4") == dataset


# -- for_api v3 ------------------------------------------------------------------------------


def test_v3_turns_single_item_lists_into_scalars() -> None:
    """v4 plural fields with one value become the v3 scalar field."""
    converted = for_api({"proposalIds": ["p1"], "principalInvestigators": ["Anders"]}, "v3")
    assert converted == {"proposalId": "p1", "principalInvestigator": "Anders"}


def test_v3_drops_empty_lists() -> None:
    """An empty v4 list gives no v3 field rather than an empty value."""
    assert for_api({"sampleIds": []}, "v3") == {}


def test_v3_keeps_v3_payload_unchanged() -> None:
    """A v3 dataset sent to v3 is returned as it is."""
    assert for_api(V3_DATASET, "v3") == V3_DATASET


def test_v3_refuses_multi_valued_list() -> None:
    """Two principal investigators cannot be sent to v3; the message says how to fix it."""
    with pytest.raises(SchemaError) as caught:
        for_api({"principalInvestigators": ["a", "b"]}, "v3")
    message = str(caught.value)
    assert "principalInvestigators has 2 values" in message
    assert "principalInvestigator" in message
    assert "api_version: v4" in message


@pytest.mark.parametrize("version", ["v3", "v4"])
def test_unknown_field_is_refused_naming_it(version: str) -> None:
    """A field SciCat does not know is an error naming the field."""
    with pytest.raises(SchemaError, match=f"dataset field dataset_name unknown to SciCat {version}"):
        for_api({**V3_DATASET, "dataset_name": "x"}, version)


def test_several_unknown_fields_are_all_named() -> None:
    """Every unknown field is listed, sorted."""
    with pytest.raises(SchemaError, match="dataset fields alpha, zeta unknown"):
        for_api({"zeta": 1, "alpha": 2}, "v3")


def test_v3_only_field_is_unknown_to_v4() -> None:
    """`investigator` exists in v3 only."""
    assert for_api({"investigator": "x"}, "v3") == {"investigator": "x"}
    with pytest.raises(SchemaError, match="investigator"):
        for_api({"investigator": "x"}, "v4")


# -- missing_required ------------------------------------------------------------------------


def test_missing_required_nothing_missing() -> None:
    """A complete v3 dataset lacks nothing."""
    assert missing_required(V3_DATASET, "v3") == []


def test_missing_required_lists_absent_and_empty_fields() -> None:
    """Absent, None and empty-string required fields are reported in a fixed order."""
    dataset = {**V3_DATASET, "owner": "", "contactEmail": None}
    del dataset["creationLocation"]
    assert missing_required(dataset, "v3") == ["owner", "contactEmail", "creationLocation"]


def test_missing_required_v4_needs_dataset_name() -> None:
    """v4 requires datasetName and not principalInvestigator."""
    dataset = {key: value for key, value in V3_DATASET.items() if key != "principalInvestigator"}
    assert missing_required(dataset, "v4") == ["datasetName"]
    assert missing_required(for_api(dataset, "v4"), "v4") == []


# -- retry policy ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        PermanentError("x"),
        ConfigError("x"),
        SchemaError("x"),
        ScicatRejected("x", status=400),
        ValueError("x"),
        RuntimeError("x"),
        KeyError("x"),
    ],
)
def test_never_retries_permanent_or_unknown_errors(error: BaseException) -> None:
    """Permanent errors and plain exceptions are not retried, even on the first attempt."""
    assert RetryPolicy(max_retries=10).should_retry(error, 0) is False


@pytest.mark.parametrize(
    "error",
    [TransientError("x"), FileNotReady("x"), ScicatUnavailable("x", status=503), QueueUnavailable("x")],
)
def test_retries_transient_errors_while_retries_remain(error: TransientError) -> None:
    """Transient errors are retried exactly max_retries times."""
    policy = RetryPolicy(max_retries=3)
    assert [policy.should_retry(error, done) for done in range(5)] == [True, True, True, False, False]


def test_zero_max_retries_never_retries() -> None:
    """max_retries 0 means one attempt only."""
    assert RetryPolicy(max_retries=0).should_retry(TransientError("x"), 0) is False


def test_delay_is_bounded_by_backoff_max() -> None:
    """However many retries were done, the delay never exceeds backoff_max_s."""
    policy = RetryPolicy(backoff_s=1.0, backoff_max_s=5.0)
    for done in range(30):
        for _ in range(20):
            assert 0 < policy.delay(done) <= 5.0


def test_delay_grows_with_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """The delay range doubles with each retry until the cap (checked at its ceiling)."""
    monkeypatch.setattr(random, "uniform", lambda low, high: high)
    policy = RetryPolicy(backoff_s=0.5, backoff_max_s=30.0)
    assert [policy.delay(done) for done in range(8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


def test_delay_has_jitter_within_half_to_full_ceiling(monkeypatch: pytest.MonkeyPatch) -> None:
    """The jittered delay is drawn from [ceiling/2, ceiling]."""
    calls: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        calls.append((low, high))
        return low

    monkeypatch.setattr(random, "uniform", uniform)
    assert RetryPolicy(backoff_s=2.0, backoff_max_s=100.0).delay(2) == 4.0
    assert calls == [(4.0, 8.0)]


class TestScicatLookupUrls:
    """Where ``SC`` variable URLs are sent."""

    def _client(self, **scicat: object) -> object:
        from offline_ingestor.config import ScicatOptions
        from offline_ingestor.scicat import ScicatClient

        return ScicatClient(ScicatOptions.model_validate({"host": "https://sc.example/api/v3", **scicat}))

    def _sent(self, client: object, path: str, monkeypatch: object) -> str:
        seen: list[str] = []

        def fake(method: str, url: str, **_: object) -> tuple[int, object]:
            seen.append(url)
            return 200, {}

        monkeypatch.setattr(
            client, "request", lambda method, p, base=None, **kw: fake(method, client.url(p, base=base))
        )  # type: ignore[attr-defined]
        client.get_json(path)  # type: ignore[attr-defined]
        return seen[0]

    def test_relative_path_goes_under_the_v3_root(self, monkeypatch: object) -> None:
        """``proposals/1`` is fetched from ``<host>/api/v3/proposals/1``."""
        assert (
            self._sent(self._client(), "proposals/1", monkeypatch) == "https://sc.example/api/v3/proposals/1"
        )

    def test_full_url_is_used_as_is(self, monkeypatch: object) -> None:
        """An absolute URL in a schema is not glued onto the API root."""
        url = "https://other.example/api/v3/instruments?filter=x"
        assert self._sent(self._client(), url, monkeypatch) == url

    def test_configured_endpoint_name_is_used(self, monkeypatch: object) -> None:
        """``api_endpoints.proposals`` renames the first path component, as upstream does."""
        client = self._client(api_endpoints={"proposals": "Proposals"}, api_version="v4")
        assert (
            self._sent(client, "proposals?filter=1", monkeypatch)
            == "https://sc.example/api/v3/Proposals?filter=1"
        )
