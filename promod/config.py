"""The promod configuration: schema, validation and the frozen ``Config`` it produces.

One TOML file (DESIGN §11). Every key is checked before the daemon starts: unknown
keys, wrong types, bad durations, money, time zones, enum values, ports and
references between sections are all collected, each with its dotted key path, and
raised together as one :class:`ConfigError`.

    config = load_config(resolve_config_path(args.config))
    config.supervisor.max_restarts, config.http.port, config.channels["mail"].options["host"]
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from email.utils import parseaddr
from pathlib import Path
from typing import Any, NoReturn, TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from promod.campaigns.spec import currency_exponent
from promod.units import parse_duration, parse_money, parse_size

__all__ = [
    "ALERT_EVENTS",
    "DEFAULT_ADMIN_SOCKET",
    "DEFAULT_CONFIG_PATH",
    "DEFAULT_STATE_DIR",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "ROLES",
    "SMTP_TLS_MODES",
    "TOKEN_SCOPES",
    "AdminConfig",
    "ChannelConfig",
    "ClearanceConfig",
    "Config",
    "ConfigError",
    "ConfigIssue",
    "CrmConfig",
    "DaemonConfig",
    "FraudConfig",
    "FrequencyCap",
    "HttpConfig",
    "HttpToken",
    "LogConfig",
    "NotifyConfig",
    "PluginsConfig",
    "PolicyConfig",
    "ProviderBudget",
    "RoleMapping",
    "StoreConfig",
    "SupervisorConfig",
    "WebhooksConfig",
    "load_config",
    "parse_config",
    "parse_config_text",
    "resolve_config_path",
]

T = TypeVar("T")
U = TypeVar("U")

DEFAULT_CONFIG_PATH = Path("/etc/promod/promod.toml")
DEFAULT_STATE_DIR = Path("/var/lib/promod")
DEFAULT_ADMIN_SOCKET = Path("/run/promod/admin.sock")
CONFIG_ENV = "PROMOD_CONFIG"

ROLES = ("admin", "operator", "viewer")
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("auto", "json", "console")
SMTP_TLS_MODES = ("none", "starttls", "implicit")
TOKEN_SCOPES = frozenset({"customers:write", "events:write", "clearance", "redeem", "read"})
ALERT_EVENTS = (
    "cap.reached",
    "codepool.low",
    "campaign.paused",
    "campaign.completed",
    "fraud.suspected",
    "killswitch.engaged",
    "actor.restarted",
    "clearance.required",
    "clearance.low_approval",
    "reward.granted",
    "plugin.circuit_open",
    "store.unavailable",
    "crm.sync_held",
    "crm.sync_failed",
)

# A Unix socket path must fit sun_path (108 bytes on Linux, with the trailing NUL).
_MAX_SOCKET_PATH = 107
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
_CURRENCY = re.compile(r"[A-Z]{3}")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_HOSTNAME = re.compile(
    r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)
_NO_NAMES: tuple[str, ...] = ()
_CLOCK = re.compile(r"([01]\d|2[0-3]):[0-5]\d")
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9.!#$*+\-/=^_`{|}~']+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")
_TOML_ERROR_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a configuration: ``path`` is the dotted key (``"channels.mail.port"``).

    ``path`` is empty for problems with the file as a whole (missing, not TOML);
    TOML syntax errors also carry ``line`` and ``column``.
    """

    path: str
    message: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(Exception):
    """A configuration that cannot be used; ``issues`` holds every problem found."""

    def __init__(self, issues: Iterable[ConfigIssue], source: Path | str) -> None:
        self.issues: list[ConfigIssue] = list(issues)
        self.source: str = str(source)
        super().__init__(str(self))

    def __str__(self) -> str:
        count = len(self.issues)
        header = f"{self.source}: {count} configuration error{'' if count == 1 else 's'}"
        return "\n".join([header, *(f"  {issue}" for issue in self.issues)])


# --------------------------------------------------------------------------- sections


@dataclass(frozen=True)
class DaemonConfig:
    """``[daemon]``: where state and the admin socket live, defaults for the process."""

    state_dir: Path = DEFAULT_STATE_DIR
    admin_socket: Path = DEFAULT_ADMIN_SOCKET
    admin_socket_mode: int = 0o660
    timezone: str = "UTC"
    shutdown_timeout: float = 30.0


@dataclass(frozen=True)
class SupervisorConfig:
    """``[supervisor]``: restart intensity (max_restarts within restart_window s), backoff."""

    max_restarts: int = 5
    restart_window: float = 60.0
    backoff_initial: float = 0.1
    backoff_max: float = 5.0


@dataclass(frozen=True)
class LogConfig:
    """``[log]``: ``level`` is one of LOG_LEVELS, ``format`` one of LOG_FORMATS."""

    level: str = "info"
    format: str = "auto"


@dataclass(frozen=True)
class StoreConfig:
    """``[store]``: the database URL as written and the SQLite file it names."""

    url: str = f"sqlite://{DEFAULT_STATE_DIR / 'promod.db'}"
    path: Path = DEFAULT_STATE_DIR / "promod.db"


@dataclass(frozen=True)
class RoleMapping:
    """Users and groups (names) that hold one admin-socket role."""

    users: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()


def _default_roles() -> dict[str, RoleMapping]:
    return {
        "admin": RoleMapping(users=("root",), groups=("promod-admin",)),
        "operator": RoleMapping(groups=("promod-ops",)),
        "viewer": RoleMapping(groups=("promod",)),
    }


@dataclass(frozen=True)
class AdminConfig:
    """``[admin.roles]``: always holds the keys admin, operator and viewer."""

    roles: dict[str, RoleMapping] = field(default_factory=_default_roles)


@dataclass(frozen=True)
class HttpToken:
    """A bearer token of the HTTP API: only the hex SHA-256 of the token is kept."""

    name: str
    sha256: str
    scopes: frozenset[str]


@dataclass(frozen=True)
class HttpConfig:
    """``[http]``: the integration API listener, its public URL and its tokens."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8470
    public_url: str = "http://127.0.0.1:8470"
    trusted_proxies: tuple[str, ...] = ()
    max_body: int = 1024 * 1024
    tokens: tuple[HttpToken, ...] = ()
    max_connections: int = 4096  # open connections at most (fewer if the descriptors are few)
    request_timeout: float = 10.0  # seconds for a request head to arrive, else closed

    @property
    def listen(self) -> str:
        """``host:port`` as in the config (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True)
class PluginsConfig:
    """``[plugins]``: extra plugin directories and plugin names not to load."""

    dirs: tuple[Path, ...] = ()
    disable: tuple[str, ...] = ()
    circuit_threshold: int = 5  # failures in a row that open a plugin's circuit
    circuit_window: float = 60.0  # ... all within this many seconds
    circuit_cooldown: float = 30.0  # seconds open before one probe call is let through


@dataclass(frozen=True)
class ChannelConfig:
    """``[channels.NAME]``: a channel instance; ``options`` are every key but ``type``.

    For the built-in ``smtp`` and ``webhook`` types the options are validated and
    complete (defaults filled in, durations as seconds); for other types they are
    passed through as written for the plugin to validate.
    """

    name: str
    type: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class WebhooksConfig:
    """``[webhooks]``: channel names that receive clearance and other events."""

    clearance: str | None = None
    events: str | None = None


@dataclass(frozen=True)
class NotifyConfig:
    """``[notify]``: how the notifier retries deliveries and where templates live.

    A failed delivery is retried after ``backoff_initial`` doubling up to
    ``backoff_max`` (with jitter), at most ``max_attempts`` times in all, then
    dead-lettered. ``templates_dir`` holds ``NAME.toml`` files for campaigns'
    ``notify.template``; None means ``templates`` next to the config file.
    """

    max_attempts: int = 10
    backoff_initial: float = 5.0
    backoff_max: float = 3600.0
    poll_interval: float = 1.0
    batch_size: int = 200
    templates_dir: Path | None = None


@dataclass(frozen=True)
class FrequencyCap:
    """At most ``max`` rewards per customer in ``days`` days, across campaigns."""

    max: int
    days: int


@dataclass(frozen=True)
class ProviderBudget:
    """Spend limits for one reward provider in one currency, across campaigns.

    In minor units of that currency (``EUR`` cents, whole ``JPY``).
    """

    lifetime: int | None = None
    daily: int | None = None


@dataclass(frozen=True)
class PolicyConfig:
    """``[policy]``: site-wide frequency cap and budgets per reward provider and currency.

    ``budgets["wallet_points"]["EUR"]`` is the budget of ``[policy.budgets.wallet_points]``
    ``EUR = {...}``; spend in one currency never counts against another's budget.
    """

    frequency: FrequencyCap | None = None
    budgets: dict[str, dict[str, ProviderBudget]] = field(default_factory=dict)


@dataclass(frozen=True)
class FraudConfig:
    """``[fraud]``: redemption rate limits and how long an offender is blocked (seconds)."""

    redemptions_per_ip_per_hour: int = 20
    redemptions_per_customer_per_hour: int = 5
    failed_redemptions_per_ip_per_hour: int = 10
    block_for: float = 3600.0


@dataclass(frozen=True)
class LedgerConfig:
    """``[ledger]``: how grants are batched and how outside providers are called."""

    batch_size: int = 1000
    provider_timeout: float = 10.0
    provider_max_attempts: int = 5
    provider_retry: float = 1.0


@dataclass(frozen=True)
class ClearanceConfig:
    """``[clearance]``: a run approved below ``min_approval_rate`` (0..1) raises an alert."""

    min_approval_rate: Decimal | None = None


@dataclass(frozen=True)
class CrmConfig:
    """``[crm.NAME]``: a CRM connector instance feeding one list under one consent.

    ``options`` are the connector's own keys, checked by the options model its type
    declares (promod.crm.connector.build_connectors); relative paths in them resolve
    against ``base``, the config file's directory.
    """

    name: str
    connector: str
    consent: str
    list: str
    schedule: str = "daily 03:00"
    media_type: str = "email"
    max_change: Decimal = Decimal("0.2")
    responses: str = "daily 04:00"
    response_retention: float = 30 * 86400.0
    options: dict[str, Any] = field(default_factory=dict)
    base: Path = Path(".")


@dataclass(frozen=True)
class Config:
    """The whole validated configuration; ``source`` is the file it was read from."""

    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    supervisor: SupervisorConfig = field(default_factory=SupervisorConfig)
    log: LogConfig = field(default_factory=LogConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    admin: AdminConfig = field(default_factory=AdminConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    plugins: PluginsConfig = field(default_factory=PluginsConfig)
    channels: dict[str, ChannelConfig] = field(default_factory=dict)
    webhooks: WebhooksConfig = field(default_factory=WebhooksConfig)
    alerts: dict[str, tuple[str, ...]] = field(default_factory=dict)
    notify: NotifyConfig = field(default_factory=NotifyConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    fraud: FraudConfig = field(default_factory=FraudConfig)
    ledger: LedgerConfig = field(default_factory=LedgerConfig)
    clearance: ClearanceConfig = field(default_factory=ClearanceConfig)
    crm: dict[str, CrmConfig] = field(default_factory=dict)
    source: Path = DEFAULT_CONFIG_PATH


# --------------------------------------------------------------------------- entry points


def resolve_config_path(cli_value: str | None, *, environ: Mapping[str, str] | None = None) -> Path:
    """The config file to use: ``--config``, else ``$PROMOD_CONFIG``, else DEFAULT_CONFIG_PATH."""
    if cli_value:
        return Path(cli_value)
    env = os.environ if environ is None else environ
    from_env = env.get(CONFIG_ENV, "")
    return Path(from_env) if from_env else DEFAULT_CONFIG_PATH


def load_config(path: Path) -> Config:
    """Read and validate the TOML file at ``path``; raise ConfigError listing every issue."""
    source = Path(path).expanduser().absolute()
    try:
        raw = source.read_bytes()
    except FileNotFoundError:
        raise ConfigError([ConfigIssue("", "file not found")], source) from None
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError([ConfigIssue("", f"cannot read file: {reason}")], source) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        issue = ConfigIssue("", f"not UTF-8 text (invalid byte at offset {exc.start})")
        raise ConfigError([issue], source) from None
    return parse_config_text(text, source)


def parse_config_text(text: str, source: Path) -> Config:
    """Parse TOML text as if read from ``source``; syntax errors carry line and column."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([_syntax_issue(exc)], source) from None
    except RecursionError:
        issue = ConfigIssue("", "arrays or tables are nested too deeply to read")
        raise ConfigError([issue], source) from None
    return parse_config(data, source)


def parse_config(data: dict[str, Any], source: Path) -> Config:
    """Validate parsed TOML ``data``; relative paths resolve against ``source``'s directory."""
    source = Path(source).expanduser().absolute()
    checker = _Checker(source.parent)
    root = _Table(checker, data, "")
    daemon = _daemon(root.table("daemon"), checker)
    supervisor = _supervisor(root.table("supervisor"))
    log = _log(root.table("log"))
    store = _store(root.table("store"), checker, daemon.state_dir)
    admin = _admin(root.table("admin"))
    http = _http(root.table("http"))
    plugins = _plugins(root.table("plugins"), checker)
    channels = _channels(root.table("channels"))
    known_channels = set(channels) | _raw_names(data.get("channels"))
    webhooks = _webhooks(root.table("webhooks"), known_channels)
    alerts = _alerts(root.table("alerts"), known_channels)
    _check_smtp_routes(checker, channels, webhooks, alerts)
    notify = _notify(root.table("notify"), checker)
    policy = _policy(root.table("policy"))
    fraud = _fraud(root.table("fraud"))
    ledger = _ledger(root.table("ledger"))
    clearance = _clearance(root.table("clearance"))
    crm = _crm(root.table("crm"), checker)
    root.finish()
    if checker.issues:
        raise ConfigError(checker.issues, source)
    return Config(
        daemon=daemon,
        supervisor=supervisor,
        log=log,
        store=store,
        admin=admin,
        http=http,
        plugins=plugins,
        channels=channels,
        webhooks=webhooks,
        alerts=alerts,
        notify=notify,
        policy=policy,
        fraud=fraud,
        ledger=ledger,
        clearance=clearance,
        crm=crm,
        source=source,
    )


def _syntax_issue(exc: tomllib.TOMLDecodeError) -> ConfigIssue:
    message = str(exc)
    found = _TOML_ERROR_POSITION.search(message)
    if found is None:
        return ConfigIssue("", f"invalid TOML: {message}")
    line, column = int(found.group(1)), int(found.group(2))
    reason = message[: found.start()]
    return ConfigIssue(
        "", f"invalid TOML at line {line}, column {column}: {reason}", line=line, column=column
    )


def _raw_names(value: object) -> set[str]:
    return set(value) if isinstance(value, dict) else set()


# --------------------------------------------------------------------------- machinery


class _Invalid(Exception):
    """Raised by a converter; ``problems`` are (sub-path, message) pairs."""

    def __init__(self, *problems: tuple[str, str]) -> None:
        super().__init__(problems)
        self.problems = problems


def _fail(message: str) -> NoReturn:
    raise _Invalid(("", message))


class _Checker:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.issues: list[ConfigIssue] = []

    def issue(self, path: str, message: str) -> None:
        self.issues.append(ConfigIssue(path, message))

    def resolve(self, text: str) -> Path:
        path = Path(text).expanduser()
        return path if path.is_absolute() else self.base / path


def _quote_key(key: str) -> str:
    if _BARE_KEY.fullmatch(key):
        return key
    escaped = key.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _join(path: str, key: str) -> str:
    return f"{path}.{_quote_key(key)}" if path else _quote_key(key)


class _Table:
    """A TOML table being read: every key read is marked, the rest are unknown."""

    def __init__(self, checker: _Checker, data: Mapping[str, Any], path: str) -> None:
        self.checker = checker
        self.data = data
        self.path = path
        self.seen: set[str] = set()

    def key_path(self, key: str) -> str:
        return _join(self.path, key)

    def keys(self) -> list[str]:
        return list(self.data)

    def has(self, key: str) -> bool:
        return key in self.data

    def report(self, key: str, message: str) -> None:
        self.checker.issue(self.key_path(key) if key else self.path, message)

    def _convert(self, key: str, conv: Callable[[Any], T], fallback: U) -> T | U:
        try:
            return conv(self.data[key])
        except _Invalid as invalid:
            for sub, message in invalid.problems:
                self.checker.issue(self.key_path(key) + sub, message)
            return fallback

    def get(self, key: str, conv: Callable[[Any], T], default: T) -> T:
        """The converted value, or ``default`` when the key is absent or invalid."""
        self.seen.add(key)
        if key not in self.data:
            return default
        return self._convert(key, conv, default)

    def optional(self, key: str, conv: Callable[[Any], T]) -> T | None:
        self.seen.add(key)
        if key not in self.data:
            return None
        return self._convert(key, conv, None)

    def require(self, key: str, conv: Callable[[Any], T], fallback: T) -> T:
        self.seen.add(key)
        if key not in self.data:
            self.report(key, "required key is missing")
            return fallback
        return self._convert(key, conv, fallback)

    def table(self, key: str) -> _Table:
        """The sub-table ``key`` (empty when absent or not a table, which is reported)."""
        self.seen.add(key)
        value = self.data.get(key, {})
        if not isinstance(value, dict):
            self.report(key, f"expected a table, got {_toml_type(value)}")
            value = {}
        return _Table(self.checker, value, self.key_path(key))

    def tables(self, key: str) -> list[_Table]:
        """An array of tables (``[[key]]``), each element checked to be a table."""
        self.seen.add(key)
        value = self.data.get(key, [])
        if not isinstance(value, list):
            self.report(key, f"expected an array of tables, got {_toml_type(value)}")
            return []
        result = []
        for index, item in enumerate(value):
            path = f"{self.key_path(key)}[{index}]"
            if isinstance(item, dict):
                result.append(_Table(self.checker, item, path))
            else:
                self.checker.issue(path, f"expected a table, got {_toml_type(item)}")
        return result

    def rest(self) -> dict[str, Any]:
        """Every key not read yet, passed through as written (and now counted as read)."""
        remaining = {key: value for key, value in self.data.items() if key not in self.seen}
        self.seen.update(remaining)
        return remaining

    def finish(self) -> None:
        for key in self.data:
            if key not in self.seen:
                self.report(key, "unknown key")


# --------------------------------------------------------------------------- converters

_TYPE_NAMES: tuple[tuple[type, str], ...] = (
    (bool, "boolean"),
    (int, "integer"),
    (float, "float"),
    (str, "string"),
    (list, "array"),
    (dict, "table"),
    (datetime, "datetime"),
    (date, "date"),
    (time, "time"),
)


def _toml_type(value: object) -> str:
    for kind, name in _TYPE_NAMES:
        if isinstance(value, kind):
            return name
    return type(value).__name__


def _string(value: Any) -> str:
    if not isinstance(value, str):
        _fail(f"expected a string, got {_toml_type(value)}")
    return value


def _nonempty(value: Any) -> str:
    text = _string(value)
    if not text.strip():
        _fail("must not be empty")
    return text


def _name(value: Any) -> str:
    text = _string(value)
    if not _NAME.fullmatch(text):
        _fail(f"invalid name {text!r}: use letters, digits, '_' and '-'")
    return text


def _choice(*choices: str, fold_case: bool = False) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        text = _string(value)
        candidate = text.lower() if fold_case else text
        if candidate not in choices:
            _fail(f"expected one of {', '.join(choices)}, got {text!r}")
        return candidate

    return convert


def _integer(minimum: int | None = None, maximum: int | None = None) -> Callable[[Any], int]:
    def convert(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            _fail(f"expected an integer, got {_toml_type(value)}")
        if minimum is not None and maximum is not None and not minimum <= value <= maximum:
            _fail(f"must be between {minimum} and {maximum}, got {value}")
        if minimum is not None and value < minimum:
            _fail(f"must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            _fail(f"must be at most {maximum}, got {value}")
        return value

    return convert


def _positive_number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        _fail(f"expected a number, got {_toml_type(value)}")
    if not value > 0 or value != value or value == float("inf"):
        _fail(f"must be a positive number, got {value}")
    return float(value)


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        _fail(f"expected a boolean (true or false), got {_toml_type(value)}")
    return value


def _duration(*, allow_zero: bool = False) -> Callable[[Any], float]:
    def convert(value: Any) -> float:
        if not isinstance(value, str):
            _fail(f'expected a duration string such as "30s", got {_toml_type(value)}')
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            _fail(str(exc))
        if seconds == 0 and not allow_zero:
            _fail(f"must be longer than zero, got {value!r}")
        return seconds

    return convert


def _money_in(exponent: int, currency: str) -> Callable[[Any], int]:
    """A money converter for amounts in ``currency`` (``exponent`` decimal places)."""

    def convert(value: Any) -> int:
        try:
            return _money(value, exponent)
        except _Invalid as invalid:
            if exponent == 0 and isinstance(value, str) and "." in value:
                _fail(f"{currency} has no minor unit: write whole {currency}, got {value!r}")
            raise invalid

    return convert


def _money(value: Any, exponent: int = 2) -> int:
    if isinstance(value, float):
        _fail(f'money must be a decimal string such as "5.00", not a float ({value!r})')
    if not isinstance(value, str):
        _fail(f'money must be a decimal string such as "5.00", got {_toml_type(value)}')
    try:
        return parse_money(value, exponent)
    except ValueError as exc:
        _fail(str(exc))


def _size(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            _fail(f"must be at least 1 byte, got {value}")
        return value
    if not isinstance(value, str):
        _fail(f'expected a size such as "1MiB", got {_toml_type(value)}')
    try:
        size = parse_size(value)
    except ValueError as exc:
        _fail(str(exc))
    if size < 1:
        _fail(f"must be at least 1 byte, got {value!r}")
    return size


def _array(item: Callable[[Any], T], what: str = "strings") -> Callable[[Any], tuple[T, ...]]:
    def convert(value: Any) -> tuple[T, ...]:
        if not isinstance(value, list):
            _fail(f"expected an array of {what}, got {_toml_type(value)}")
        result: list[T] = []
        problems: list[tuple[str, str]] = []
        for index, element in enumerate(value):
            try:
                result.append(item(element))
            except _Invalid as invalid:
                problems.extend((f"[{index}]{sub}", message) for sub, message in invalid.problems)
        if problems:
            raise _Invalid(*problems)
        return tuple(result)

    return convert


def _path(checker: _Checker) -> Callable[[Any], Path]:
    def convert(value: Any) -> Path:
        return checker.resolve(_nonempty(value))

    return convert


def _socket_path(checker: _Checker) -> Callable[[Any], Path]:
    def convert(value: Any) -> Path:
        path = checker.resolve(_nonempty(value))
        if len(os.fsencode(path)) > _MAX_SOCKET_PATH:
            _fail(f"path too long for a Unix socket ({_MAX_SOCKET_PATH} bytes at most): {path}")
        return path

    return convert


def _socket_mode(value: Any) -> int:
    if isinstance(value, str):
        if not re.fullmatch(r"0?o?[0-7]{3,4}", value):
            _fail(f'expected an octal file mode such as "0660", got {value!r}')
        mode = int(value.replace("o", ""), 8)
    elif isinstance(value, int) and not isinstance(value, bool):
        mode = value
    else:
        _fail(f'expected an octal file mode such as "0660", got {_toml_type(value)}')
    if not 0 <= mode <= 0o777:
        _fail(f"file mode out of range: {oct(mode)}")
    return mode


def _timezone(value: Any) -> str:
    name = _nonempty(value)
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        _fail(f"unknown time zone {name!r} (use an IANA name such as 'Europe/Berlin' or 'UTC')")
    return name


def _host(text: str) -> str:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        if not _HOSTNAME.fullmatch(text):
            _fail(f"invalid host {text!r}")
    return text


def _port(text: str, *, allow_zero: bool) -> int:
    if not text.isdigit():
        _fail(f"invalid port {text!r}")
    port = int(text)
    lowest = 0 if allow_zero else 1
    if not lowest <= port <= 65535:
        _fail(f"port out of range ({lowest}-65535): {port}")
    return port


def _listen(value: Any) -> tuple[str, int]:
    text = _string(value)
    bracketed = re.fullmatch(r"\[([^\]]+)\]:([^:]*)", text)
    if bracketed:
        host, port = bracketed.group(1), bracketed.group(2)
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            _fail(f"invalid IPv6 address {host!r}")
    else:
        host, sep, port = text.rpartition(":")
        if not sep or not host or ":" in host:
            _fail(f'expected "HOST:PORT" such as "127.0.0.1:8470", got {text!r}')
        _host(host)
    # Port 0 asks the kernel for a free port (useful in tests).
    return host, _port(port, allow_zero=True)


def _url(value: Any) -> str:
    text = _nonempty(value)
    try:
        parts = urlsplit(text)
    except ValueError as exc:
        _fail(f"invalid URL {text!r}: {exc}")
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or any(c.isspace() for c in text)
    ):
        _fail(f"expected an http:// or https:// URL, got {text!r}")
    try:
        _ = parts.port
    except ValueError:
        _fail(f"invalid port in URL {text!r}")
    return text


def _network(value: Any) -> str:
    text = _string(value)
    try:
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        _fail(f"expected an IP address or network such as '10.0.0.0/8', got {text!r}")


def _env_name(value: Any) -> str:
    text = _string(value)
    if not _ENV_NAME.fullmatch(text):
        _fail(f"invalid environment variable name {text!r}")
    return text


def _sha256(value: Any) -> str:
    text = _string(value)
    if not _SHA256.fullmatch(text):
        _fail("expected the SHA-256 of the token as 64 lowercase hex digits")
    return text


def _scope(value: Any) -> str:
    text = _string(value)
    if text not in TOKEN_SCOPES:
        _fail(f"unknown scope {text!r} (known: {', '.join(sorted(TOKEN_SCOPES))})")
    return text


def _sender(value: Any) -> str:
    text = _nonempty(value)
    _, address = parseaddr(text)
    if "@" not in address:
        _fail(f"expected an email address such as 'Promotions <promo@example.org>', got {text!r}")
    return text


def _plain_address(value: Any) -> str:
    """A bare ASCII ``user@domain``, as it can stand in a ``mailto:`` URI."""
    text = _nonempty(value)
    if not _PLAIN_ADDRESS.fullmatch(text):
        _fail(f"expected a plain address such as 'unsubscribe@example.org', got {text!r}")
    return text


def _schedule(value: Any) -> str:
    """``daily HH:MM``, ``hourly`` or ``every DURATION``."""
    text = _nonempty(value)
    words = text.split()
    if words == ["hourly"]:
        return text
    if len(words) == 2 and words[0] == "daily" and _CLOCK.fullmatch(words[1]):
        return text
    if len(words) == 2 and words[0] == "every":
        try:
            if parse_duration(words[1]) > 0:
                return text
        except ValueError:
            pass
    _fail(
        f'expected "daily HH:MM", "hourly" or "every DURATION" (such as "every 6h"), got {text!r}'
    )


# --------------------------------------------------------------------------- sections


def _daemon(t: _Table, checker: _Checker) -> DaemonConfig:
    config = DaemonConfig(
        state_dir=t.get("state_dir", _path(checker), DEFAULT_STATE_DIR),
        admin_socket=t.get("admin_socket", _socket_path(checker), DEFAULT_ADMIN_SOCKET),
        admin_socket_mode=t.get("admin_socket_mode", _socket_mode, 0o660),
        timezone=t.get("timezone", _timezone, "UTC"),
        shutdown_timeout=t.get("shutdown_timeout", _duration(allow_zero=True), 30.0),
    )
    t.finish()
    return config


def _supervisor(t: _Table) -> SupervisorConfig:
    config = SupervisorConfig(
        max_restarts=t.get("max_restarts", _integer(0), 5),
        restart_window=t.get("restart_window", _duration(), 60.0),
        backoff_initial=t.get("backoff_initial", _duration(allow_zero=True), 0.1),
        backoff_max=t.get("backoff_max", _duration(allow_zero=True), 5.0),
    )
    if config.backoff_max < config.backoff_initial:
        t.report("backoff_max", "must not be shorter than backoff_initial")
    t.finish()
    return config


def _log(t: _Table) -> LogConfig:
    config = LogConfig(
        level=t.get("level", _choice(*LOG_LEVELS, fold_case=True), "info"),
        format=t.get("format", _choice(*LOG_FORMATS, fold_case=True), "auto"),
    )
    t.finish()
    return config


def _store(t: _Table, checker: _Checker, state_dir: Path) -> StoreConfig:
    default_path = state_dir / "promod.db"
    url = t.get("url", _nonempty, f"sqlite://{default_path}")
    t.finish()
    path = default_path
    if url.startswith(("postgresql:", "postgres:")):
        t.report("url", "PostgreSQL is not supported yet; use sqlite:///PATH")
    elif url.startswith("sqlite://"):
        rest = url[len("sqlite://") :]
        if not rest.startswith("/") or rest == "/":
            t.report(
                "url",
                f"expected sqlite:///ABSOLUTE/PATH or sqlite:RELATIVE/PATH, got {url!r}",
            )
        else:
            path = Path(rest)
    elif url.startswith("sqlite:"):
        rest = url[len("sqlite:") :]
        if not rest:
            t.report("url", "the sqlite URL names no file")
        else:
            path = checker.resolve(rest)
    else:
        t.report("url", f"unsupported database URL {url!r} (expected sqlite:///PATH)")
    return StoreConfig(url=url, path=path)


def _admin(t: _Table) -> AdminConfig:
    if not t.has("roles"):
        t.finish()
        return AdminConfig()
    roles_table = t.table("roles")
    t.finish()
    roles = {role: RoleMapping() for role in ROLES}
    for role in roles_table.keys():
        if role not in ROLES:
            roles_table.seen.add(role)
            roles_table.report(role, f"unknown role {role!r} (roles are {', '.join(ROLES)})")
            continue
        entry = roles_table.table(role)
        roles[role] = RoleMapping(
            users=entry.get("users", _array(_nonempty), _NO_NAMES),
            groups=entry.get("groups", _array(_nonempty), _NO_NAMES),
        )
        entry.finish()
    roles_table.finish()
    return AdminConfig(roles=roles)


def _http(t: _Table) -> HttpConfig:
    enabled = t.get("enabled", _boolean, True)
    host, port = t.get("listen", _listen, ("127.0.0.1", 8470))
    listen_host = f"[{host}]" if ":" in host else host
    public_url = t.get("public_url", _url, f"http://{listen_host}:{port}").rstrip("/")
    trusted = t.get("trusted_proxies", _array(_network, "IP addresses or networks"), _NO_NAMES)
    max_body = t.get("max_body", _size, 1024 * 1024)
    max_connections = t.get("max_connections", _integer(1, 1_000_000), 4096)
    request_timeout = t.get("request_timeout", _duration(), 10.0)
    tokens: list[HttpToken] = []
    names: set[str] = set()
    hashes: set[str] = set()
    for entry in t.tables("tokens"):
        name = entry.require("name", _name, "")
        digest = entry.require("sha256", _sha256, "")
        scopes = entry.require("scopes", _array(_scope, "scopes"), _NO_NAMES)
        if entry.data.get("scopes") == []:
            entry.report("scopes", "a token needs at least one scope")
        if name and name in names:
            entry.report("name", f"duplicate token name {name!r}")
        if digest and digest in hashes:
            entry.report("sha256", "the same token is listed twice")
        names.add(name)
        hashes.add(digest)
        entry.finish()
        tokens.append(HttpToken(name=name, sha256=digest, scopes=frozenset(scopes)))
    t.finish()
    return HttpConfig(
        enabled=enabled,
        host=host,
        port=port,
        public_url=public_url,
        trusted_proxies=trusted,
        max_body=max_body,
        tokens=tuple(tokens),
        max_connections=max_connections,
        request_timeout=request_timeout,
    )


def _plugins(t: _Table, checker: _Checker) -> PluginsConfig:
    config = PluginsConfig(
        dirs=t.get("dirs", _array(_path(checker), "paths"), ()),
        disable=t.get("disable", _array(_nonempty), _NO_NAMES),
        circuit_threshold=t.get("circuit_threshold", _integer(1, 1000), 5),
        circuit_window=t.get("circuit_window", _duration(), 60.0),
        circuit_cooldown=t.get("circuit_cooldown", _duration(), 30.0),
    )
    t.finish()
    return config


_SMTP_PORTS = {"none": 25, "starttls": 587, "implicit": 465}


def _smtp_options(t: _Table) -> dict[str, Any]:
    tls = t.get("tls", _choice(*SMTP_TLS_MODES), "starttls")
    options: dict[str, Any] = {
        "host": t.get("host", _host_value, "localhost"),
        "port": t.get("port", _integer(1, 65535), _SMTP_PORTS[tls]),
        "tls": tls,
        "from": t.require("from", _sender, ""),
        "username": t.optional("username", _nonempty),
        "password": t.optional("password", _string),
        "password_env": t.optional("password_env", _env_name),
        "timeout": t.get("timeout", _duration(), 30.0),
        "rate": t.optional("rate", _positive_number),
        "alerts_to": t.get("alerts_to", _array(_sender, "email addresses"), _NO_NAMES),
        "unsubscribe_mailto": t.optional("unsubscribe_mailto", _plain_address),
    }
    if t.has("password") and t.has("password_env"):
        t.report("password_env", "set only one of password and password_env")
    return options


def _host_value(value: Any) -> str:
    return _host(_nonempty(value))


def _webhook_options(t: _Table) -> dict[str, Any]:
    options: dict[str, Any] = {
        "url": t.require("url", _url, ""),
        "secret": t.optional("secret", _nonempty),
        "secret_env": t.optional("secret_env", _env_name),
        "timeout": t.get("timeout", _duration(), 10.0),
    }
    if t.has("secret") and t.has("secret_env"):
        t.report("secret_env", "set only one of secret and secret_env")
    elif not t.has("secret") and not t.has("secret_env"):
        t.report("", "set secret or secret_env: webhooks are signed with it")
    return options


def _channels(t: _Table) -> dict[str, ChannelConfig]:
    channels: dict[str, ChannelConfig] = {}
    for name in t.keys():
        entry = t.table(name)
        if not _NAME.fullmatch(name):
            entry.report("", "invalid channel name: use letters, digits, '_' and '-'")
        kind = entry.require("type", _nonempty, "")
        if kind == "smtp":
            options = _smtp_options(entry)
        elif kind == "webhook":
            options = _webhook_options(entry)
        else:
            options = entry.rest()
        entry.finish()
        channels[name] = ChannelConfig(name=name, type=kind, options=options)
    t.finish()
    return channels


def _channel_ref(known: set[str]) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        name = _nonempty(value)
        if name not in known:
            listed = ", ".join(sorted(known)) or "none defined"
            _fail(f"no channel named {name!r} (channels: {listed})")
        return name

    return convert


def _webhooks(t: _Table, known: set[str]) -> WebhooksConfig:
    config = WebhooksConfig(
        clearance=t.optional("clearance", _channel_ref(known)),
        events=t.optional("events", _channel_ref(known)),
    )
    t.finish()
    return config


def _alerts(t: _Table, known: set[str]) -> dict[str, tuple[str, ...]]:
    alerts: dict[str, tuple[str, ...]] = {}
    for event in t.keys():
        if event not in ALERT_EVENTS:
            t.seen.add(event)
            t.report(event, f"unknown event type {event!r} (known: {', '.join(ALERT_EVENTS)})")
            continue
        alerts[event] = t.get(event, _array(_channel_ref(known), "channel names"), _NO_NAMES)
    t.finish()
    return alerts


def _check_smtp_routes(
    checker: _Checker,
    channels: dict[str, ChannelConfig],
    webhooks: WebhooksConfig,
    alerts: dict[str, tuple[str, ...]],
) -> None:
    """Alerts and events sent to an smtp channel need its ``alerts_to`` recipients."""
    routes = [(f"alerts.{_quote_key(e)}", names) for e, names in alerts.items()]
    routes += [(f"webhooks.{key}", (name,)) for key, name in vars(webhooks).items() if name]
    for path, names in routes:
        for name in names:
            channel = channels.get(name)
            if channel and channel.type == "smtp" and not channel.options.get("alerts_to"):
                checker.issue(
                    path, f"channel {name!r} is smtp: set channels.{name}.alerts_to to send there"
                )


def _notify(t: _Table, checker: _Checker) -> NotifyConfig:
    config = NotifyConfig(
        max_attempts=t.get("max_attempts", _integer(1, 1000), 10),
        backoff_initial=t.get("backoff_initial", _duration(), 5.0),
        backoff_max=t.get("backoff_max", _duration(), 3600.0),
        poll_interval=t.get("poll_interval", _duration(), 1.0),
        batch_size=t.get("batch_size", _integer(1, 10000), 200),
        templates_dir=t.optional("templates_dir", _path(checker)),
    )
    if config.backoff_max < config.backoff_initial:
        t.report("backoff_max", "must not be shorter than backoff_initial")
    t.finish()
    return config


def _policy(t: _Table) -> PolicyConfig:
    frequency: FrequencyCap | None = None
    if t.has("frequency"):
        entry = t.table("frequency")
        frequency = FrequencyCap(
            max=entry.require("max", _integer(1), 1),
            days=entry.require("days", _integer(1), 1),
        )
        entry.finish()
    budgets_table = t.table("budgets")
    budgets: dict[str, dict[str, ProviderBudget]] = {}
    for provider in budgets_table.keys():
        by_currency = budgets_table.table(provider)
        budgets[provider] = {}
        for currency in by_currency.keys():
            if not _CURRENCY.fullmatch(currency):
                by_currency.seen.add(currency)
                if currency in ("lifetime", "daily"):
                    message = (
                        "a budget names its currency: write"
                        f' [policy.budgets.{_quote_key(provider)}] EUR = {{ {currency} = "..." }}'
                    )
                else:
                    message = f"expected an ISO 4217 currency code such as EUR, got {currency!r}"
                by_currency.report(currency, message)
                continue
            entry = by_currency.table(currency)
            if not isinstance(by_currency.data[currency], dict):
                continue  # reported by table()
            money = _money_in(currency_exponent(currency), currency)
            budget = ProviderBudget(
                lifetime=entry.optional("lifetime", money), daily=entry.optional("daily", money)
            )
            if not entry.has("lifetime") and not entry.has("daily"):
                entry.report("", "set lifetime and/or daily")
            entry.finish()
            budgets[provider][currency] = budget
        by_currency.finish()
    budgets_table.finish()
    t.finish()
    return PolicyConfig(frequency=frequency, budgets=budgets)


def _fraud(t: _Table) -> FraudConfig:
    config = FraudConfig(
        redemptions_per_ip_per_hour=t.get("redemptions_per_ip_per_hour", _integer(1), 20),
        redemptions_per_customer_per_hour=t.get(
            "redemptions_per_customer_per_hour", _integer(1), 5
        ),
        failed_redemptions_per_ip_per_hour=t.get(
            "failed_redemptions_per_ip_per_hour", _integer(1), 10
        ),
        block_for=t.get("block_for", _duration(), 3600.0),
    )
    t.finish()
    return config


def _ledger(t: _Table) -> LedgerConfig:
    config = LedgerConfig(
        batch_size=t.get("batch_size", _integer(1, 100_000), 1000),
        provider_timeout=t.get("provider_timeout", _duration(), 10.0),
        provider_max_attempts=t.get("provider_max_attempts", _integer(1, 100), 5),
        provider_retry=t.get("provider_retry", _duration(), 1.0),
    )
    t.finish()
    return config


def _fraction(value: Any) -> Decimal:
    if isinstance(value, float):
        _fail(f'a rate must be a decimal string such as "0.5", not a float ({value!r})')
    if not isinstance(value, str):
        _fail(f'expected a decimal string such as "0.5", got {_toml_type(value)}')
    try:
        rate = Decimal(value.strip())
    except InvalidOperation:
        _fail(f'expected a decimal string such as "0.5", got {value!r}')
    if not rate.is_finite() or not Decimal(0) <= rate <= Decimal(1):
        _fail(f"must be between 0 and 1, got {value!r}")
    return rate


def _clearance(t: _Table) -> ClearanceConfig:
    config = ClearanceConfig(min_approval_rate=t.optional("min_approval_rate", _fraction))
    t.finish()
    return config


CRM_KEYS = (
    "connector",
    "consent",
    "list",
    "schedule",
    "media_type",
    "max_change",
    "responses",
    "response_retention",
)
_DAY = 86400.0


def _retention(value: Any) -> float:
    seconds = _duration()(value)
    if not 14 * _DAY <= seconds <= 30 * _DAY:
        _fail(f"must be between 14d and 30d, got {value!r}")
    return seconds


def _crm(t: _Table, checker: _Checker) -> dict[str, CrmConfig]:
    connectors: dict[str, CrmConfig] = {}
    for name in t.keys():
        entry = t.table(name)
        if not _NAME.fullmatch(name):
            entry.report("", "invalid connector instance name: use letters, digits, '_' and '-'")
        connector = entry.require("connector", _nonempty, "")
        consent = entry.require("consent", _nonempty, "")
        list_name = entry.get("list", _nonempty, f"crm-{name}")
        schedule = entry.get("schedule", _schedule, "daily 03:00")
        media_type = entry.get("media_type", _nonempty, "email")
        max_change = entry.get("max_change", _fraction, Decimal("0.2"))
        responses = entry.get("responses", _schedule, "daily 04:00")
        retention = entry.get("response_retention", _retention, 30 * _DAY)
        options: dict[str, Any] = dict(entry.rest())
        entry.finish()
        connectors[name] = CrmConfig(
            name=name,
            connector=connector,
            consent=consent,
            list=list_name,
            schedule=schedule,
            media_type=media_type,
            max_change=max_change,
            responses=responses,
            response_retention=retention,
            options=options,
            base=checker.base,
        )
    t.finish()
    return connectors
