"""Loading and validating the configuration file (promod.config)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from promod.config import (
    DEFAULT_CONFIG_PATH,
    Config,
    ConfigError,
    ProviderBudget,
    load_config,
    parse_config,
    resolve_config_path,
)

# The sample of DESIGN §11 (one over-long comment shortened).
DESIGN_SAMPLE = """
[daemon]
state_dir = "/var/lib/promod"            # database and durable state
admin_socket = "/run/promod/admin.sock"
timezone = "UTC"                          # default for campaigns without one
shutdown_timeout = "30s"

[supervisor]
max_restarts = 5
restart_window = "60s"

[log]
level = "info"
format = "auto"                           # auto (console on a TTY, else JSON) | json | console

[store]
url = "sqlite:///var/lib/promod/promod.db"   # later also postgresql://...

[admin.roles]                             # who may do what on the admin socket
admin = { users = ["root"], groups = ["promod-admin"] }
operator = { groups = ["promod-ops"] }
viewer = { groups = ["promod"] }

[http]
listen = "127.0.0.1:8470"
public_url = "http://127.0.0.1:8470"     # used in webhook payloads and unsubscribe links
trusted_proxies = []
max_body = "1MiB"

[[http.tokens]]                           # bearer tokens; only the hex SHA-256 is stored
name = "backend"
sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
scopes = ["customers:write", "events:write", "clearance", "redeem", "read"]

[plugins]
dirs = []
disable = []

[channels.mail]                           # channel instances: the name is the site's
type = "smtp"
host = "localhost"
port = 25
tls = "none"                              # none | starttls | implicit
from = "Promotions <promo@example.org>"
rate = 50                                 # messages per second

[channels.backend]
type = "webhook"
url = "http://127.0.0.1:9000/promod"
secret_env = "PROMOD_BACKEND_SECRET"      # or secret = "..."

[webhooks]
clearance = "backend"                     # the channel that receives clearance.required
events = "backend"                        # reward.granted, campaign.* (optional)

[alerts]                                  # event type -> channels
"cap.reached" = ["backend"]
"codepool.low" = ["backend"]
"fraud.suspected" = ["backend"]

[policy]
frequency = { max = 3, days = 30 }        # at most 3 rewards per customer in 30 days, all campaigns
[policy.budgets.wallet_points]            # per reward provider, then per currency, across campaigns
EUR = { lifetime = "100000.00", daily = "5000.00" }

[fraud]
redemptions_per_ip_per_hour = 20
redemptions_per_customer_per_hour = 5
failed_redemptions_per_ip_per_hour = 10
block_for = "1h"

[crm.main]                                # CRM connector instances
connector = "csv"
path = "/var/lib/promod/crm/recipients.csv"
schedule = "daily 03:00"
consent = "marketing_email"
"""

WEBHOOK = """
[channels.backend]
type = "webhook"
url = "http://127.0.0.1:9000/promod"
secret = "s3cret"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "promod.toml"
    path.write_text(text, encoding="utf-8")
    return path


def load(tmp_path: Path, text: str) -> Config:
    return load_config(write(tmp_path, text))


def issues(tmp_path: Path, text: str) -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    return {issue.path: issue.message for issue in caught.value.issues}


def test_design_sample_loads_with_every_value(tmp_path: Path) -> None:
    config = load(tmp_path, DESIGN_SAMPLE)
    assert config.daemon.state_dir == Path("/var/lib/promod")
    assert config.daemon.shutdown_timeout == 30.0
    assert config.supervisor.max_restarts == 5
    assert config.supervisor.restart_window == 60.0
    assert config.store.path == Path("/var/lib/promod/promod.db")
    assert config.admin.roles["admin"].users == ("root",)
    assert config.admin.roles["operator"].groups == ("promod-ops",)
    assert (config.http.host, config.http.port) == ("127.0.0.1", 8470)
    assert config.http.max_body == 1024 * 1024
    assert config.http.tokens[0].scopes == {
        "customers:write",
        "events:write",
        "clearance",
        "redeem",
        "read",
    }
    mail = config.channels["mail"]
    assert (mail.type, mail.options["port"], mail.options["tls"]) == ("smtp", 25, "none")
    assert config.channels["backend"].options["secret_env"] == "PROMOD_BACKEND_SECRET"
    assert config.webhooks.clearance == "backend"
    assert config.alerts["cap.reached"] == ("backend",)
    assert config.policy.frequency is not None
    assert (config.policy.frequency.max, config.policy.frequency.days) == (3, 30)
    budget = config.policy.budgets["wallet_points"]["EUR"]
    assert (budget.lifetime, budget.daily) == (10_000_000, 500_000)
    assert config.fraud.block_for == 3600.0
    assert config.crm["main"].schedule == "daily 03:00"
    assert config.crm["main"].options["path"] == Path("/var/lib/promod/crm/recipients.csv")
    assert config.crm["main"].consent == "marketing_email"
    assert config.source == tmp_path / "promod.toml"


def test_empty_file_gives_the_dataclass_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    assert load_config(path) == Config(source=path)


def test_three_errors_are_all_reported_with_their_paths(tmp_path: Path) -> None:
    found = issues(
        tmp_path,
        """
        [supervisor]
        max_restarts = "5"
        [channels.mail]
        type = "smtp"
        from = "promo@example.org"
        port = 70000
        [policy.budgets.wallet_points]
        EUR = { lifetime = 100.5 }
        """,
    )
    assert found == {
        "supervisor.max_restarts": "expected an integer, got string",
        "channels.mail.port": "must be between 1 and 65535, got 70000",
        "policy.budgets.wallet_points.EUR.lifetime": (
            'money must be a decimal string such as "5.00", not a float (100.5)'
        ),
    }


def test_error_message_lists_every_issue(tmp_path: Path) -> None:
    path = write(tmp_path, '[log]\nlevel = "loud"\nformat = "xml"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    text = str(caught.value)
    assert text.splitlines()[0] == f"{path}: 2 configuration errors"
    assert "log.level: expected one of debug, info, warning, error, got 'loud'" in text
    assert "log.format: expected one of auto, json, console, got 'xml'" in text
    assert caught.value.source == str(path)


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("colour = 1", "colour"),
        ("[daemon]\nstatedir = '/x'", "daemon.statedir"),
        ("[admin]\nusers = []", "admin.users"),
        ("[admin.roles]\nadmin = { users = [], gropus = [] }", "admin.roles.admin.gropus"),
        (
            '[[http.tokens]]\nname = "a"\nsha256 = "' + "0" * 64 + '"\nscopes = ["read"]\nx = 1',
            "http.tokens[0].x",
        ),
        ('[channels.m]\ntype = "smtp"\nfrom = "a@b.c"\nhots = "x"', "channels.m.hots"),
        (WEBHOOK + "retries = 3", "channels.backend.retries"),
        ("[policy]\nfrequency = { max = 1, days = 1, weeks = 2 }", "policy.frequency.weeks"),
        ("[fraud]\nblock = '1h'", "fraud.block"),
        ('[webhooks]\nclearence = "x"', "webhooks.clearence"),
        # The csv connector's options model refuses what it does not know.
        (
            '[crm.main]\nconnector = "csv"\nconsent = "m"\npath = "a.csv"\nschedul = "hourly"',
            "crm.main.schedul",
        ),
    ],
)
def test_unknown_keys_are_errors_anywhere(tmp_path: Path, text: str, path: str) -> None:
    assert issues(tmp_path, text) == {path: "unknown key"}


def test_channel_type_without_a_plugin_is_an_error(tmp_path: Path) -> None:
    found = issues(tmp_path, '[channels.sms]\ntype = "twilio"\nsender = "+4912345"\n')
    assert found == {
        "channels.sms.type": "no plugin provides channel type 'twilio' (known: smtp, webhook)"
    }


def test_crm_connector_without_a_plugin_is_an_error(tmp_path: Path) -> None:
    found = issues(tmp_path, '[crm.main]\nconnector = "bogus-connector"\nconsent = "m"\n')
    assert found == {
        "crm.main.connector": (
            "no plugin provides CRM connector 'bogus-connector' (known: csv, http)"
        )
    }


def test_toml_syntax_error_has_line_and_column(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, '[daemon]\ntimezone = "UTC"\nshutdown_timeout = 30s\n')
    (issue,) = caught.value.issues
    assert (issue.line, issue.column) == (3, 22)
    assert issue.message.startswith("invalid TOML at line 3, column 22:")


def test_duplicate_key_is_a_syntax_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="line 3"):
        load(tmp_path, "[log]\nlevel = 'info'\nlevel = 'debug'\n")


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.toml")


def test_non_utf8_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "promod.toml"
    path.write_bytes(b'[log]\nlevel = "\xff"\n')
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path)


@pytest.mark.parametrize(
    ("text", "path", "message"),
    [
        ("[daemon]\nshutdown_timeout = 30", "daemon.shutdown_timeout", "duration string"),
        ("[daemon]\nshutdown_timeout = '30'", "daemon.shutdown_timeout", "invalid duration"),
        ("[supervisor]\nrestart_window = '0s'", "supervisor.restart_window", "longer than zero"),
        ("[supervisor]\nmax_restarts = 2.0", "supervisor.max_restarts", "got float"),
        ("[supervisor]\nmax_restarts = -1", "supervisor.max_restarts", "at least 0"),
        ("[supervisor]\nbackoff_initial = '10s'", "supervisor.backoff_max", "backoff_initial"),
        ("[daemon]\ntimezone = 'Mars/Olympus'", "daemon.timezone", "unknown time zone"),
        ("[daemon]\nadmin_socket_mode = '0999'", "daemon.admin_socket_mode", "octal"),
        ("daemon = 5", "daemon", "expected a table, got integer"),
        ("[http]\nlisten = '127.0.0.1'", "http.listen", "HOST:PORT"),
        ("[http]\nlisten = 'localhost:99999'", "http.listen", "out of range"),
        ("[http]\npublic_url = 'ftp://x'", "http.public_url", "http:// or https://"),
        ("[http]\ntrusted_proxies = ['10.0.0.0/8', 'nope']", "http.trusted_proxies[1]", "IP"),
        ("[http]\nmax_body = '1 parsec'", "http.max_body", "invalid size"),
        ("[http]\nenabled = 'yes'", "http.enabled", "boolean"),
        ("[store]\nurl = 'postgresql://db/promod'", "store.url", "not supported yet"),
        ("[store]\nurl = 'mysql://db'", "store.url", "unsupported"),
        ("[admin.roles]\nroot = { users = ['root'] }", "admin.roles.root", "unknown role"),
        ("[admin.roles]\nadmin = { users = 'root' }", "admin.roles.admin.users", "array"),
        ("[plugins]\ndisable = ['a', 3]", "plugins.disable[1]", "expected a string"),
        ("[webhooks]\nclearance = 'backend'", "webhooks.clearance", "no channel named"),
        ('[alerts]\n"cap.reachd" = []', 'alerts."cap.reachd"', "unknown event type"),
        ('[alerts]\n"cap.reached" = ["pager"]', 'alerts."cap.reached"[0]', "no channel"),
        ("[policy]\nfrequency = { max = 0, days = 30 }", "policy.frequency.max", "at least 1"),
        ("[policy]\nfrequency = { max = 3 }", "policy.frequency.days", "required"),
        ("[policy.budgets.w]\nEUR = { daily = 5000 }", "policy.budgets.w.EUR.daily", "decimal"),
        ("[policy.budgets.w]\nEUR = { daily = '-5' }", "policy.budgets.w.EUR.daily", "invalid"),
        ("[policy.budgets.w]\nEUR = { daily = '5.001' }", "policy.budgets.w.EUR.daily", "2 dec"),
        ("[policy.budgets.w]\nKWD = { daily = '5.0001' }", "policy.budgets.w.KWD.daily", "3 dec"),
        ("[policy.budgets.w]\nJPY = { daily = '5.5' }", "policy.budgets.w.JPY.daily", "no minor"),
        ("[policy.budgets.w]\nEUR = {}", "policy.budgets.w.EUR", "lifetime and/or daily"),
        ("[policy.budgets.w]\nEUR = '5.00'", "policy.budgets.w.EUR", "expected a table"),
        ("[policy.budgets.w]\neur = { daily = '5' }", "policy.budgets.w.eur", "ISO 4217"),
        ("[policy.budgets]\nw = { daily = '5' }", "policy.budgets.w.daily", "names its currency"),
        ("[policy.budgets.w]\nEUR = { dialy = '5' }", "policy.budgets.w.EUR.dialy", "unknown key"),
        ("[fraud]\nblock_for = 3600", "fraud.block_for", "duration string"),
        ("[fraud]\nredemptions_per_ip_per_hour = 0", "fraud.redemptions_per_ip_per_hour", "1"),
        ("[crm.main]\nconnector = 'csv'", "crm.main.consent", "required"),
        (
            "[crm.main]\nconnector = 'csv'\nconsent = 'm'\nresponse_retention = '7d'",
            "crm.main.response_retention",
            "between 14d and 30d",
        ),
        ("[crm.x]\nconnector = 'y'\nschedule = 'daily 25:00'", "crm.x.schedule", "daily HH:MM"),
        ("[crm.x]\nschedule = 'hourly'", "crm.x.connector", "required"),
        ('[channels.mail]\ntype = "smtp"', "channels.mail.from", "required"),
        ('[channels.mail]\ntype = "smtp"\nfrom = "nobody"', "channels.mail.from", "email"),
        ('[channels.m]\ntype = "smtp"\nfrom = "a@b.c"\ntls = "ssl"', "channels.m.tls", "one of"),
        ('[channels.m]\ntype = "smtp"\nfrom = "a@b.c"\nrate = 0', "channels.m.rate", "positive"),
        ('[channels.m]\ntype = "smtp"\nfrom = "a@b.c"\nhost = "a b"', "channels.m.host", "host"),
        (
            '[channels.m]\ntype = "smtp"\nfrom = "a@b.c"\nconnections = 0',
            "channels.m.connections",
            "1",
        ),
        ('[channels.m]\ntype = "smtp"\nfrom = "a@b.c"\nburst = -1', "channels.m.burst", "positive"),
        (
            '[channels.b]\ntype = "webhook"\nurl = "http://x"\nsecret = "s"\nconnections = "4"',
            "channels.b.connections",
            "integer",
        ),
        ('[channels.b]\ntype = "webhook"\nurl = "http://x"', "channels.b", "secret"),
        ('[channels.b]\ntype = "webhook"\nsecret = "s"', "channels.b.url", "required"),
        ("[channels.b]\nurl = 'http://x'", "channels.b.type", "required"),
        ('["channels"."my mail"]\ntype = "x"', 'channels."my mail"', "invalid channel name"),
    ],
)
def test_invalid_values_are_reported_at_their_key(
    tmp_path: Path, text: str, path: str, message: str
) -> None:
    found = issues(tmp_path, text)
    assert path in found, found
    assert message in found[path]


def test_http_tokens_are_checked(tmp_path: Path) -> None:
    digest = "ab" * 32
    found = issues(
        tmp_path,
        f"""
        [[http.tokens]]
        name = "backend"
        sha256 = "{digest.upper()}"
        scopes = ["read", "write"]
        [[http.tokens]]
        name = "backend"
        sha256 = "{digest}"
        scopes = []
        [[http.tokens]]
        scopes = ["read"]
        """,
    )
    assert found == {
        "http.tokens[0].sha256": "expected the SHA-256 of the token as 64 lowercase hex digits",
        "http.tokens[0].scopes[1]": (
            "unknown scope 'write' (known: clearance, customers:write, events:write, read, redeem)"
        ),
        "http.tokens[1].scopes": "a token needs at least one scope",
        "http.tokens[1].name": "duplicate token name 'backend'",
        "http.tokens[2].name": "required key is missing",
        "http.tokens[2].sha256": "required key is missing",
    }


def test_relative_paths_resolve_against_the_config_directory(tmp_path: Path) -> None:
    (tmp_path / "plugins").mkdir()
    (tmp_path / "more").mkdir()
    config = load(
        tmp_path,
        f"""
        [daemon]
        state_dir = "state"
        admin_socket = "run/admin.sock"
        [store]
        url = "sqlite:data/promod.db"
        [plugins]
        dirs = ["plugins", "{tmp_path / "more"}"]
        [crm.main]
        connector = "csv"
        consent = "marketing_email"
        path = "crm/recipients.csv"
        """,
    )
    assert config.daemon.state_dir == tmp_path / "state"
    assert config.daemon.admin_socket == tmp_path / "run" / "admin.sock"
    assert config.store.path == tmp_path / "data" / "promod.db"
    assert config.plugins.dirs == (tmp_path / "plugins", tmp_path / "more")
    # The connector's options model resolved its path against the config's directory.
    assert config.crm["main"].options["path"] == tmp_path / "crm" / "recipients.csv"


def test_store_defaults_to_the_state_dir(tmp_path: Path) -> None:
    config = load(tmp_path, '[daemon]\nstate_dir = "/srv/promod"\n')
    assert config.store.path == Path("/srv/promod/promod.db")
    assert config.store.url == "sqlite:///srv/promod/promod.db"


def test_absolute_sqlite_url(tmp_path: Path) -> None:
    config = load(tmp_path, '[store]\nurl = "sqlite:///srv/db/promod.db"\n')
    assert config.store.path == Path("/srv/db/promod.db")


def test_admin_roles_not_listed_are_empty(tmp_path: Path) -> None:
    config = load(tmp_path, '[admin.roles]\noperator = { users = ["ops"] }\n')
    assert list(config.admin.roles) == ["admin", "operator", "viewer"]
    assert config.admin.roles["operator"].users == ("ops",)
    assert config.admin.roles["admin"].users == ()


def test_socket_mode_as_string_or_toml_octal(tmp_path: Path) -> None:
    assert (
        load(tmp_path, '[daemon]\nadmin_socket_mode = "0600"\n').daemon.admin_socket_mode == 0o600
    )
    assert load(tmp_path, "[daemon]\nadmin_socket_mode = 0o640\n").daemon.admin_socket_mode == 0o640


def test_socket_path_too_long_for_unix_sockets(tmp_path: Path) -> None:
    long_path = "/tmp/" + "x" * 120 + "/admin.sock"
    found = issues(tmp_path, f'[daemon]\nadmin_socket = "{long_path}"\n')
    assert "too long" in found["daemon.admin_socket"]


def test_smtp_defaults_follow_tls(tmp_path: Path) -> None:
    config = load(tmp_path, '[channels.m]\ntype = "smtp"\nfrom = "a@example.org"\n')
    options = config.channels["m"].options
    assert (options["host"], options["tls"], options["port"]) == ("localhost", "starttls", 587)
    assert options["timeout"] == 30.0
    assert options["rate"] is None
    assert (options["connections"], options["burst"]) == (4, None)


def test_smtp_password_and_password_env_are_exclusive(tmp_path: Path) -> None:
    text = '[channels.m]\ntype = "smtp"\nfrom = "a@b.c"\npassword = "x"\npassword_env = "PW"\n'
    assert issues(tmp_path, text) == {
        "channels.m.password_env": "set only one of password and password_env"
    }


def test_smtp_unsubscribe_mailto_is_a_plain_address(tmp_path: Path) -> None:
    head = '[channels.m]\ntype = "smtp"\nfrom = "a@b.c"\n'
    config = load(tmp_path, head + 'unsubscribe_mailto = "leave@example.org"\n')
    assert config.channels["m"].options["unsubscribe_mailto"] == "leave@example.org"
    assert load(tmp_path, head).channels["m"].options["unsubscribe_mailto"] is None
    for bad in ("Leave <leave@example.org>", "léa@example.org", "leave@example.org?x=1"):
        found = issues(tmp_path, head + f'unsubscribe_mailto = "{bad}"\n')
        assert "plain address" in found["channels.m.unsubscribe_mailto"], bad


def test_log_level_is_case_insensitive(tmp_path: Path) -> None:
    assert load(tmp_path, '[log]\nlevel = "DEBUG"\n').log.level == "debug"


def test_http_listen_ipv6_and_public_url_default(tmp_path: Path) -> None:
    config = load(tmp_path, '[http]\nlisten = "[::1]:9000"\n')
    assert (config.http.host, config.http.port) == ("::1", 9000)
    assert config.http.listen == "[::1]:9000"
    assert config.http.public_url == "http://[::1]:9000"


def test_webhooks_and_alerts_reference_channels(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        WEBHOOK + '[webhooks]\nclearance = "backend"\n[alerts]\n"actor.restarted" = ["backend"]\n',
    )
    assert config.webhooks.clearance == "backend"
    assert config.webhooks.events is None
    assert config.alerts == {"actor.restarted": ("backend",)}


def test_schedule_forms(tmp_path: Path) -> None:
    for schedule in ("daily 03:00", "hourly", "every 6h"):
        text = (
            f'[crm.x]\nconnector = "csv"\nconsent = "m"\npath = "x.csv"\nschedule = "{schedule}"\n'
        )
        assert load(tmp_path, text).crm["x"].schedule == schedule


def test_parse_config_takes_a_dict() -> None:
    data: dict[str, Any] = {"supervisor": {"max_restarts": 1, "restart_window": "5s"}}
    config = parse_config(data, Path("/etc/promod/promod.toml"))
    assert config.supervisor.max_restarts == 1
    assert config.supervisor.restart_window == 5.0


def test_resolve_config_path_precedence() -> None:
    assert resolve_config_path("a.toml", environ={"PROMOD_CONFIG": "b.toml"}) == Path("a.toml")
    assert resolve_config_path(None, environ={"PROMOD_CONFIG": "b.toml"}) == Path("b.toml")
    assert resolve_config_path(None, environ={}) == DEFAULT_CONFIG_PATH
    assert resolve_config_path(None, environ={"PROMOD_CONFIG": ""}) == DEFAULT_CONFIG_PATH


def test_resolve_config_path_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMOD_CONFIG", "/srv/promod.toml")
    assert resolve_config_path(None) == Path("/srv/promod.toml")


def test_plugin_circuit_settings(tmp_path: Path) -> None:
    defaults = load(tmp_path, "").plugins
    assert (defaults.circuit_threshold, defaults.circuit_window, defaults.circuit_cooldown) == (
        5,
        60.0,
        30.0,
    )
    text = '[plugins]\ncircuit_threshold = 3\ncircuit_window = "10s"\ncircuit_cooldown = "500ms"\n'
    config = load(tmp_path, text).plugins
    assert (config.circuit_threshold, config.circuit_window, config.circuit_cooldown) == (
        3,
        10.0,
        0.5,
    )
    for bad, message in (
        ("circuit_threshold = 0", "plugins.circuit_threshold"),
        ('circuit_threshold = "3"', "plugins.circuit_threshold"),
        ("circuit_cooldown = 30", "plugins.circuit_cooldown"),
        ('circuit_window = "0s"', "plugins.circuit_window"),
    ):
        with pytest.raises(ConfigError) as info:
            load(tmp_path, f"[plugins]\n{bad}\n")
        assert message in str(info.value)


def test_circuit_open_is_an_alert_event(tmp_path: Path) -> None:
    config = load(tmp_path, WEBHOOK + '[alerts]\n"plugin.circuit_open" = ["backend"]\n')
    assert config.alerts == {"plugin.circuit_open": ("backend",)}


def test_clearance_min_approval_rate(tmp_path: Path) -> None:
    from decimal import Decimal

    assert load(tmp_path, "").clearance.min_approval_rate is None
    config = load(tmp_path, '[clearance]\nmin_approval_rate = "0.75"\n')
    assert config.clearance.min_approval_rate == Decimal("0.75")
    for bad, message in (
        ("min_approval_rate = 0.5", "not a float"),
        ('min_approval_rate = "1.5"', "between 0 and 1"),
        ('min_approval_rate = "half"', "decimal string"),
        ('min_approval_rate = "NaN"', "between 0 and 1"),
        ('floor = "0.5"', "unknown key"),
    ):
        found = issues(tmp_path, f"[clearance]\n{bad}\n")
        assert any(message in m for m in found.values()), (bad, found)
    config = load(tmp_path, WEBHOOK + '[alerts]\n"clearance.low_approval" = ["backend"]\n')
    assert config.alerts == {"clearance.low_approval": ("backend",)}


def test_database_tools_load_no_plugin_but_check_config_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from promod.cli import main

    path = write(
        tmp_path,
        f'[daemon]\nstate_dir = "{tmp_path}"\n[channels.p]\ntype = "pager"\nnumber = "112"\n',
    )
    assert load_config(path, plugin_options=False).channels["p"].options == {"number": "112"}
    assert main(["db", "migrate", "--config", str(path)]) == 0
    assert main(["check-config", "--config", str(path)]) == 1
    assert "channels.p.type: no plugin provides channel type 'pager'" in capsys.readouterr().err


def test_policy_budgets_are_per_provider_and_currency_in_that_currencys_units(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path,
        """
        [policy.budgets.wallet_points]
        EUR = { lifetime = "100000.00", daily = "5000.00" }
        JPY = { daily = "500000" }
        [policy.budgets.coupon]
        KWD = { lifetime = "10.125" }
        """,
    )
    policy = load_config(path).policy
    assert policy.budgets["wallet_points"]["EUR"] == ProviderBudget(
        lifetime=10_000_000, daily=500_000
    )
    assert policy.budgets["wallet_points"]["JPY"] == ProviderBudget(daily=500_000)
    assert policy.budgets["coupon"]["KWD"] == ProviderBudget(lifetime=10_125)
