"""A campaign mail from the daemon, unsubscribed the way a mailbox provider does it (RFC 8058)."""

from __future__ import annotations

import email.parser
import email.policy
import re
import sqlite3

import httpx
import pytest

from tests.notify.support import SmtpServer, free_port
from tests.support.daemon import wait_until
from tests.support.data import seed_customers, wallet_spec

pytestmark = pytest.mark.slow

NOTIFY = """
[notify]
channel = "mail"
consent = "marketing_email"
subject = "Your ${reward_amount} points are waiting"
text = "Hello ${customer_id}. Unsubscribe: ${unsubscribe_url}"
"""


def test_one_click_post_to_the_mails_list_unsubscribe_url_unsubscribes_at_once(
    daemon_factory,
) -> None:
    smtp = SmtpServer().start()
    port = free_port()
    try:
        d = daemon_factory(
            edits={
                r"^port = 8025": f"port = {smtp.port}",
                r'^listen = "127\.0\.0\.1:0"': f'listen = "127.0.0.1:{port}"',
                r"^public_url = .*": f'public_url = "http://127.0.0.1:{port}"',
                r'^from = "Promotions <promo@example.org>"': (
                    'from = "Promotions <promo@example.org>"\n'
                    'unsubscribe_mailto = "unsubscribe@example.org"'
                ),
            },
            start=False,
        )
        d.start()
        seed_customers(d.root / "state" / "promod.db", ["c1"], consents=["marketing_email"])
        spec = d.root / "spec.toml"
        spec.write_text(wallet_spec() + NOTIFY)
        assert d.ctl("campaign", "apply", "-f", str(spec)).returncode == 0
        assert d.ctl("campaign", "launch", "winback").returncode == 0
        wait_until(lambda: smtp.sink.raw, timeout=30, what="the campaign mail")

        [raw] = smtp.sink.raw
        mail = email.parser.BytesParser(policy=email.policy.default).parsebytes(raw)
        header_block = raw.split(b"\r\n\r\n", 1)[0]
        assert b"=?" not in header_block  # nothing RFC 2047-encoded
        assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert re.fullmatch(r"<[^<>\s]+@example\.org>", str(mail["Message-ID"]))
        uris = re.findall(r"<([^<>]+)>", str(mail["List-Unsubscribe"]))
        assert uris[1] == "mailto:unsubscribe@example.org?subject=unsubscribe"
        url = uris[0]
        assert url.startswith(f"http://127.0.0.1:{port}/v1/unsubscribe?token=")

        # What a mailbox provider sends: a POST to the URL as written, the form body,
        # no cookies, no credentials, no redirects followed.
        with httpx.Client(timeout=10, follow_redirects=False) as client:
            answer = client.post(
                url,
                content=b"List-Unsubscribe=One-Click",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
        assert answer.status_code == 200, answer.text

        consent = d.ctl_json("customers", "show", "c1")["consents"]["marketing_email"]
        assert (consent["granted"], consent["source"]) == (False, "unsubscribe")
        with sqlite3.connect(d.root / "state" / "promod.db") as conn:
            row = conn.execute(
                "SELECT reason FROM suppressions WHERE address = ?", ("c1@example.org",)
            ).fetchone()
        assert row == ("unsubscribed",)
        assert d.stop() == 0
    finally:
        smtp.stop()
