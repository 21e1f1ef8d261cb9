"""A daily notification campaign against the daemon subprocess and a real SMTP server.

Customers come in by ``promodctl customers import`` (tags, consents, attributes).
The campaign mails exactly the tagged customers that consented, each with their
own missing steps; the next day's run mails nobody (``not_within``); once the
window has passed they are mailed again, but not one who opted out through the
consent API in between. The consent API answers every change with its source and
refuses what does not match its schema; ``campaign apply`` refuses broken templates.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import re
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import httpx
import pytest

from tests.notify.support import SmtpServer, free_port
from tests.support.daemon import Daemon, wait_until

pytestmark = pytest.mark.slow

T0 = datetime(2026, 12, 1, 6, 0, tzinfo=UTC).timestamp()
DAY = 86400.0

CUSTOMERS: list[dict[str, Any]] = [
    # tagged, consenting, profile incomplete and not verified: two steps missing
    {
        "id": "c1",
        "email": "c1@example.org",
        "tags": ["revenue_incomplete_profile"],
        "consents": {"loyalty_reminders": True},
        "attributes": {"profile_complete": False, "verified": False, "nick": "<b>Ann</b>"},
    },
    # tagged, consenting, only verification missing
    {
        "id": "c2",
        "email": "c2@example.org",
        "tags": ["revenue_incomplete_profile"],
        "consents": {"loyalty_reminders": True, "marketing_email": True},
        "attributes": {"profile_complete": True, "verified": False, "nick": "Bo"},
    },
    # tagged, no such consent
    {
        "id": "c3",
        "email": "c3@example.org",
        "tags": ["revenue_incomplete_profile"],
        "consents": {"marketing_email": True},
        "attributes": {"nick": "Cy"},
    },
    # consenting, not tagged
    {
        "id": "c4",
        "email": "c4@example.org",
        "tags": ["other"],
        "consents": {"loyalty_reminders": True},
        "attributes": {"nick": "Di"},
    },
    # tagged, consent withdrawn
    {
        "id": "c5",
        "email": "c5@example.org",
        "tags": ["revenue_incomplete_profile"],
        "consents": {"loyalty_reminders": False},
        "attributes": {"nick": "Ed"},
    },
]

SPEC = """
id = "loyalty"
name = "Loyalty reminders"
kind = "notification"
timezone = "UTC"

[schedule]
start = "2026-12-01T09:00:00Z"
recurring = "daily 09:00"

[segment]
tag = "revenue_incomplete_profile"

[notify]
channel = "mail"
consent = "loyalty_reminders"
not_within = "3d"
subject = "{{ customer.attributes.nick }}, {{ missing_steps | length }} steps to your bonus"
text = '''
Hello {{ customer.attributes.nick }},
{% if missing_steps %}
still to do:
{% for step in missing_steps %}
- {{ step.text }}
{% endfor %}
{% else %}
all done!
{% endif %}
Wallet: {{ wallet.points }} points. Tags: {{ tags | join(", ") }}.
'''
html = '''<p>Hello {{ customer.attributes.nick }}</p>
<ul>{% for step in missing_steps %}<li>{{ step.text }}</li>{% endfor %}</ul>'''

[[notify.steps]]
id = "complete_profile"
text = "Complete your profile"
done = { attr = "profile_complete", eq = true }

[[notify.steps]]
id = "verify"
text = "Verify your account"
done = { attr = "verified", eq = true }
"""


ADDRESSES = {str(c["email"]) for c in CUSTOMERS}


def _mails(smtp: SmtpServer) -> list[EmailMessage]:
    """The mails to customers (operators' alerts, such as a failing CRM sync, left out)."""
    parser = email.parser.BytesParser(policy=email.policy.default)
    mails = [parser.parsebytes(raw) for raw in list(smtp.sink.raw)]
    return [m for m in mails if str(m["To"]) in ADDRESSES]  # type: ignore[misc]


def _body(mail: EmailMessage, kind: str) -> str:
    part = mail.get_body(preferencelist=(kind,))
    assert part is not None
    return str(part.get_content()).replace("\r\n", "\n")


def _daemon(daemon_factory: Any, smtp: SmtpServer) -> tuple[Daemon, str]:
    port = free_port()
    d: Daemon = daemon_factory(
        edits={
            r"^port = 8025": f"port = {smtp.port}",
            r'^listen = "127\.0\.0\.1:0"': f'listen = "127.0.0.1:{port}"',
            r"^public_url = .*": f'public_url = "http://127.0.0.1:{port}"',
        },
        env={"PROMOD_TEST_CLOCK": str(T0)},
    )
    return d, f"http://127.0.0.1:{port}"


def _import(d: Daemon, customers: list[dict[str, Any]]) -> None:
    path = d.root / "customers.jsonl"
    path.write_text("".join(json.dumps(c) + "\n" for c in customers))
    res = d.ctl("customers", "import", str(path))
    assert res.returncode == 0, res.stderr


def _advance_to(d: Daemon, when: float, now: float) -> None:
    assert d.request("clock.advance", {"seconds": when - now})["ok"]
    d.settle()


def test_a_daily_notification_campaign_mails_the_tagged_consenting_customers_once_per_window(
    daemon_factory: Any,
) -> None:
    smtp = SmtpServer().start()
    try:
        d, base = _daemon(daemon_factory, smtp)
        token = (d.root / "http-token").read_text().strip()
        _import(d, CUSTOMERS)
        (d.root / "spec.toml").write_text(SPEC)
        applied = d.ctl("campaign", "apply", "-f", str(d.root / "spec.toml"))
        assert applied.returncode == 0, applied.stderr
        assert d.ctl("campaign", "launch", "loyalty", "--pilot", "50%").returncode == 0
        projection = d.ctl_json("campaign", "simulate", "loyalty")
        assert (projection["targeted"], projection["would_mail"]) == (4, 2)
        assert projection["refused"] == {"no_consent": 2, "not_within": 0}
        assert projection["missing_steps"] == {"complete_profile": 1, "verify": 2}

        # Day 1, 09:00: a pilot of half the targets first, then the campaign pauses.
        first = T0 + 3 * 3600
        _advance_to(d, first, T0)
        shown = d.ctl_json("campaign", "show", "loyalty")
        assert (shown["state"], shown["paused_reason"]) == ("paused", "pilot")
        [pilot] = d.ctl_json("campaign", "report", "loyalty")["runs"]
        assert pilot["pending"] == 2
        assert pilot["selected"] + sum(pilot["refused"].values()) == 2
        wait_until(
            lambda: len(_mails(smtp)) == pilot["selected"], timeout=30, what="the pilot's mails"
        )
        assert d.ctl("campaign", "resume", "loyalty").returncode == 0
        d.settle()
        # Then exactly c1 and c2, each with their own missing steps.
        wait_until(lambda: len(_mails(smtp)) >= 2, timeout=30, what="two mails")
        d.settle()
        mails = {str(m["To"]): m for m in _mails(smtp)}
        assert sorted(mails) == ["c1@example.org", "c2@example.org"]
        c1, c2 = mails["c1@example.org"], mails["c2@example.org"]
        assert str(c1["Subject"]) == "<b>Ann</b>, 2 steps to your bonus"
        text1 = _body(c1, "plain")
        assert "- Complete your profile\n- Verify your account\n" in text1
        assert "Tags: revenue_incomplete_profile." in text1
        text2 = _body(c2, "plain")
        assert "- Verify your account\n" in text2
        assert "Complete your profile" not in text2
        # HTML is autoescaped: the customer's own data cannot inject markup.
        assert "<p>Hello &lt;b&gt;Ann&lt;/b&gt;</p>" in _body(c1, "html")
        # The footer links the preference page with a signed token.
        assert f"Your email preferences: {base}/v1/preferences?token=" in text1
        assert c1["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert c1["Precedence"] == "bulk"

        # Day 2: within not_within, nobody is mailed again.
        second = first + DAY
        _advance_to(d, second, first)
        assert len(_mails(smtp)) == 2
        report = d.ctl_json("campaign", "report", "loyalty")
        assert [r["selected"] for r in report["runs"]] == [2, 0]
        assert report["runs"][1]["refused"] == {"no_consent": 2, "not_within": 2}
        assert report["messages"]["sent"] == 2

        # c2 withdraws the consent through the site's own customer area (the API).
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=base, timeout=10, headers=headers) as client:
            answer = client.put(
                "/v1/customers/c2/consents", json={"consents": {"loyalty_reminders": False}}
            )
            assert answer.status_code == 200, answer.text
            assert answer.json()["consents"]["loyalty_reminders"]["source"] == "api"
            history = client.get("/v1/customers/c2/consents").json()["history"]
        assert [(h["consent"], h["granted"], h["source"]) for h in history][:1] == [
            ("loyalty_reminders", False, "api")
        ]
        assert ("loyalty_reminders", True, "import") in [
            (h["consent"], h["granted"], h["source"]) for h in history
        ]

        # Day 5: the window has passed; c1 is mailed again, c2 no longer consents.
        fifth = first + 4 * DAY
        _advance_to(d, fifth, second)
        wait_until(lambda: len(_mails(smtp)) >= 3, timeout=30, what="the third mail")
        d.settle()
        assert [str(m["To"]) for m in _mails(smtp)[2:]] == ["c1@example.org"]

        # The consent API refuses null (naming the key), unknown customers and no token.
        with httpx.Client(base_url=base, timeout=10, headers=headers) as client:
            null = client.put(
                "/v1/customers/c1/consents", json={"consents": {"loyalty_reminders": None}}
            )
            assert null.status_code == 422, null.text
            assert "loyalty_reminders" in null.text
            whole = client.put("/v1/customers/c1/consents", json={"consents": None})
            assert whole.status_code == 422
            missing = client.put("/v1/customers/nobody/consents", json={"consents": {}})
            assert missing.status_code == 404
            assert client.get("/v1/customers/nobody/consents").status_code == 404
            view = client.get("/v1/customers/c1/consents").json()
        assert httpx.get(f"{base}/v1/customers/c1/consents", timeout=10).status_code == 401
        assert view["consents"]["loyalty_reminders"] == {
            "granted": True,
            "updated_at": view["consents"]["loyalty_reminders"]["updated_at"],
            "source": "import",
        }

        # campaign apply refuses an unknown variable and shows a template error's line.
        broken = SPEC.replace('id = "loyalty"', 'id = "broken"')
        (d.root / "broken.toml").write_text(broken.replace("{{ wallet.points }}", "{{ walet }}"))
        refused = d.ctl("campaign", "apply", "-f", str(d.root / "broken.toml"))
        assert refused.returncode != 0
        assert "notify.text" in refused.stderr and "unknown variable 'walet'" in refused.stderr
        (d.root / "broken.toml").write_text(broken.replace("{% endif %}", ""))
        refused = d.ctl("campaign", "apply", "-f", str(d.root / "broken.toml"))
        assert refused.returncode != 0
        assert re.search(r"notify\.text: line \d+: ", refused.stderr), refused.stderr
        assert d.stop() == 0
    finally:
        smtp.stop()
