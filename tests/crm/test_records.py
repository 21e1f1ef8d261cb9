"""CRM records and schedules: one consent and one media type per list; schedule moments."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from promod.crm.connector import ConnectorConfigError, build_connectors
from promod.crm.csvdrop import CsvConnectorType
from promod.crm.httpcrm import HttpConnectorType
from promod.crm.records import RecordError, parse_record
from promod.crm.sync import next_time
from promod.plugins.options import validate_options

BASE: dict[str, Any] = {
    "id": "c1",
    "email": "Ann@Example.org",
    "opt_in_id": "oi-1",
    "description": "newsletter",
    "media_type": "email",
    "entity_type": "lead",
    "entity_id": "00Q1",
}


def parse(**changes: Any) -> Any:
    record = {**BASE, **changes}
    return parse_record(
        {k: v for k, v in record.items() if v is not None},
        consent="marketing_email",
        media_type="email",
    )


def test_a_record_keeps_its_entity_and_opt_in_and_lower_cases_the_address() -> None:
    record = parse(opted_in_at="2026-11-30T10:00:00Z", consent="marketing_email")
    assert (record.entity_type, record.entity_id, record.opt_in_id) == ("lead", "00Q1", "oi-1")
    assert record.email == "ann@example.org"
    assert record.opted_in_at == datetime(2026, 11, 30, 10, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"consent": "transactional"}, "consent"),
        ({"media_type": "sms"}, "media_type"),
        ({"entity_id": None}, "entity_id"),
        ({"opt_in_id": ""}, "opt_in_id"),
        ({"email": None}, "email"),
        ({"opted_in_at": "2026-11-30T10:00:00"}, "opted_in_at"),
        ({"segment": "x"}, None),
    ],
)
def test_a_record_of_another_consent_or_media_type_or_incomplete_is_refused(
    changes: dict[str, Any], field: str | None
) -> None:
    with pytest.raises(RecordError) as caught:
        parse(**changes)
    assert caught.value.field == field


def test_daily_schedules_fall_at_the_site_time_and_intervals_on_their_multiples() -> None:
    t = datetime(2026, 12, 1, 2, 59, tzinfo=UTC).timestamp()
    assert next_time("daily 03:00", t) == t + 60
    assert next_time("daily 03:00", t + 60) == t + 60 + 86400
    berlin = next_time("daily 03:00", t, "Europe/Berlin")
    assert datetime.fromtimestamp(berlin, UTC).hour == 2  # 03:00 CET
    assert next_time("every 5m", t) == t + 60
    assert next_time("hourly", t) == t + 60


TYPES = {"csv": CsvConnectorType(), "http": HttpConnectorType()}


def _check(kind: str, **options: Any) -> dict[str, str]:
    _, problems = validate_options(
        TYPES[kind], options, ("crm", "main"), context={"base": Path("/etc/promod")}
    )
    return dict(problems)


def test_connector_options_are_checked_by_the_type_s_model_naming_the_key() -> None:
    model, _ = validate_options(
        TYPES["csv"], {"dir": "crm"}, ("crm", "main"), context={"base": Path("/etc/promod")}
    )
    assert model is not None and model.model_dump()["dir"] == Path("/etc/promod/crm")
    assert "crm.main.recipeints" in _check("csv", dir="crm", recipeints="x.csv")
    assert "crm.main.dir" in _check("csv")
    assert "secret" in _check("http", url="https://crm", auth="hmac").get("crm.main.secret", "")
    assert "crm.main.url" in _check("http", url="ftp://crm", token="t")
    with pytest.raises(ConnectorConfigError) as caught:
        build_connectors({"s": Cfg("soap")}, TYPES)
    assert caught.value.key == "crm.s.connector"


class Cfg:
    def __init__(self, connector: str, **options: Any) -> None:
        self.connector = connector
        self.options = options


@pytest.mark.anyio
async def test_the_http_connector_signs_its_requests_with_hmac_when_told() -> None:
    from promod.crm.httpcrm import HttpConnector, HttpOptions
    from promod.notify.webhook import verify_signature
    from tests.support.crm import CrmServer, recipient

    server = CrmServer([recipient("c1"), recipient("c2"), recipient("c3")])
    try:
        options = HttpOptions(url=server.url, auth="hmac", secret="s3cret", page_size=2)
        connector = HttpConnector("s", options)
        pages = [page async for page in connector.fetch()]
        await connector.close()
    finally:
        server.close()
    assert [len(p) for p in pages] == [2, 1]
    assert server.auth == [None, None]  # no bearer token beside the signature
    for header, path in server.signatures:
        assert header is not None
        assert verify_signature(b"s3cret", header, path.encode())
        assert not verify_signature(b"other", header, path.encode())
