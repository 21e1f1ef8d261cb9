"""The preference page in a real headless Chromium (Debian's chromium + chromium-driver).

The daemon is a subprocess with a daily notification campaign, mail goes to a real
SMTP server. The test opens the footer link of the mail a customer received,
switches the consent off, saves, and sees the next day's run skip that customer
while the other one is mailed again. Without chromium it skips (one line), except
in CI (the ``CI`` variable set), where .ci/run installs it and its absence fails.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.notify.support import SmtpServer
from tests.notify.test_notification_e2e import (
    CUSTOMERS,
    DAY,
    T0,
    _advance_to,
    _body,
    _daemon,
    _import,
    _mails,
)
from tests.support.daemon import wait_until

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

NEWSLETTER = """
id = "newsletter"
name = "Loyalty newsletter"
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
subject = "Your loyalty status"
text = "Hello {{ customer.id }}: {{ missing_steps | length }} steps left."
"""


@pytest.fixture
def browser() -> Iterator[Any]:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        message = "chromium not installed (apt-get install chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _page_text(browser: Any) -> str:
    """The page's text, or "" while the browser is between pages."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By

    try:
        return str(browser.find_element(By.TAG_NAME, "body").text)
    except WebDriverException:  # no body yet, or the old one went stale
        return ""


def test_an_opt_out_on_the_preference_page_is_respected_by_the_next_run(
    daemon_factory: Any, browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    smtp = SmtpServer().start()
    try:
        d, base = _daemon(daemon_factory, smtp)
        _import(d, CUSTOMERS)
        (d.root / "spec.toml").write_text(NEWSLETTER)
        applied = d.ctl("campaign", "apply", "-f", str(d.root / "spec.toml"))
        assert applied.returncode == 0, applied.stderr
        assert d.ctl("campaign", "launch", "newsletter").returncode == 0

        first = T0 + 3 * 3600
        _advance_to(d, first, T0)
        wait_until(lambda: len(_mails(smtp)) >= 2, timeout=30, what="the first newsletter")
        d.settle()
        [c1] = [m for m in _mails(smtp) if str(m["To"]) == "c1@example.org"]
        link = re.search(r"Your email preferences: (\S+)", _body(c1, "plain"))
        assert link is not None and link.group(1).startswith(f"{base}/v1/preferences?token=")

        browser.get(link.group(1))
        assert browser.title == "Your email preferences"
        on = browser.find_element(By.ID, "consent-loyalty_reminders-on")
        off = browser.find_element(By.ID, "consent-loyalty_reminders-off")
        assert on.is_selected() and not off.is_selected()
        off.click()
        assert off.is_selected() and not on.is_selected()
        browser.find_element(By.ID, "save").click()
        wait_until(lambda: "saved" in _page_text(browser), timeout=10, what="the saved page")
        assert browser.find_element(By.ID, "consent-loyalty_reminders-off").is_selected()
        consent = d.ctl_json("customers", "show", "c1")["consents"]["loyalty_reminders"]
        assert (consent["granted"], consent["source"]) == (False, "page")

        # The next newsletter: c2 again, c1 not.
        _advance_to(d, first + DAY, first)
        wait_until(lambda: len(_mails(smtp)) >= 3, timeout=30, what="the second newsletter")
        d.settle()
        assert [str(m["To"]) for m in _mails(smtp)[2:]] == ["c2@example.org"]
        report = d.ctl_json("campaign", "report", "newsletter")
        assert report["runs"][1]["refused"] == {"no_consent": 3}
        assert d.stop() == 0
    finally:
        smtp.stop()
