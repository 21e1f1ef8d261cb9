"""The installed plugin inside a real daemon (promod's own ``promod_daemon`` fixture)."""

from __future__ import annotations

import promod_partner_voucher
import pytest

pytestmark = pytest.mark.slow


def test_the_daemon_registers_the_provider_from_the_entry_point(promod_daemon) -> None:
    plugins = {p["name"]: p for p in promod_daemon.call("plugins")}
    info = plugins["partner_voucher"]
    assert info["source"] == "entrypoint"
    assert info["version"] == promod_partner_voucher.__version__
    assert info["hooks"] == ["promod_register_reward_providers"]
    assert "provider:partner_voucher" in info["registers"]
