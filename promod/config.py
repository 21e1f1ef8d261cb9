"""The promod configuration: one pydantic model per section, and the frozen ``Config``.

One TOML file (``promod init`` writes a commented sample: promod/data/promod.toml.in).
Every key is checked before the daemon starts: unknown keys, wrong types, bad
durations, money, time zones, enum values, ports and references between sections
are all collected, each with its dotted key path, and raised together as one
:class:`ConfigError`. The options of a channel (``[channels.NAME]``) or CRM
connector (``[crm.NAME]``) are checked by the options model its plugin type
declares (:mod:`promod.plugins.options`), in the same pass::

    config = load_config(resolve_config_path(args.config))
    config.supervisor.max_restarts, config.http.port, config.channels["mail"].options["host"]
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import (
    AfterValidator,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from promod.campaigns.spec import currency_exponent
from promod.schema import (
    CONFIG_WORDS,
    Check,
    ConfigPath,
    Duration,
    DurationOrZero,
    Invalid,
    Issue,
    Model,
    Name,
    NonEmpty,
    NonNegativeInt,
    PositiveInt,
    Problems,
    Size,
    StrictBool,
    TimeZoneName,
    all_of,
    between,
    choice,
    config_base,
    describe,
    host,
    http_url,
    issues_of,
    join_path,
    resolve_path,
)
from promod.units import parse_duration, parse_money

if TYPE_CHECKING:
    from promod.plugins.options import PluginTypes

__all__ = [
    "ALERT_EVENTS",
    "DEFAULT_ADMIN_SOCKET",
    "DEFAULT_CONFIG_PATH",
    "DEFAULT_STATE_DIR",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "ROLES",
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
    "LedgerConfig",
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

DEFAULT_CONFIG_PATH = Path("/etc/promod/promod.toml")
DEFAULT_STATE_DIR = Path("/var/lib/promod")
DEFAULT_ADMIN_SOCKET = Path("/run/promod/admin.sock")
CONFIG_ENV = "PROMOD_CONFIG"

ROLES = ("admin", "operator", "viewer")
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("auto", "json", "console")
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
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CURRENCY = re.compile(r"[A-Z]{3}")
_CLOCK = re.compile(r"([01]\d|2[0-3]):[0-5]\d")
_TOML_ERROR_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")


# --------------------------------------------------------------------------- results


class ConfigIssue:
    """One problem in a configuration: ``path`` is the dotted key (``"channels.mail.port"``).

    ``path`` is empty for problems with the file as a whole (missing, not TOML);
    TOML syntax errors also carry ``line`` and ``column``.
    """

    __slots__ = ("column", "line", "message", "path")

    def __init__(
        self, path: str, message: str, line: int | None = None, column: int | None = None
    ) -> None:
        self.path = path
        self.message = message
        self.line = line
        self.column = column

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ConfigIssue):
            return NotImplemented
        return (self.path, self.message, self.line, self.column) == (
            other.path,
            other.message,
            other.line,
            other.column,
        )

    def __hash__(self) -> int:
        return hash((self.path, self.message, self.line, self.column))

    def __repr__(self) -> str:
        return f"ConfigIssue({self.path!r}, {self.message!r})"

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


# --------------------------------------------------------------------------- value types


def _socket_path(value: Any, info: ValidationInfo) -> Path:
    path = resolve_path(value, info)
    if len(os.fsencode(path)) > _MAX_SOCKET_PATH:
        raise Invalid(f"path too long for a Unix socket ({_MAX_SOCKET_PATH} bytes at most): {path}")
    return path


def _socket_mode(value: Any) -> int:
    if isinstance(value, str):
        if not re.fullmatch(r"0?o?[0-7]{3,4}", value):
            raise Invalid(f'expected an octal file mode such as "0660", got {value!r}')
        mode = int(value.replace("o", ""), 8)
    elif isinstance(value, int) and not isinstance(value, bool):
        mode = value
    else:
        raise Invalid(f'expected an octal file mode such as "0660", got {describe(value)}')
    if not 0 <= mode <= 0o777:
        raise Invalid(f"file mode out of range: {oct(mode)}")
    return mode


def _listen(value: Any) -> str:
    if not isinstance(value, str):
        raise Invalid(f"expected a string, got {describe(value)}")
    split_listen(value)
    return value


def split_listen(text: str) -> tuple[str, int]:
    """``"HOST:PORT"`` (``"[::1]:8470"`` for IPv6) as (host, port); port 0 picks a free one."""
    bracketed = re.fullmatch(r"\[([^\]]+)\]:([^:]*)", text)
    if bracketed:
        name, port = bracketed.group(1), bracketed.group(2)
        try:
            ipaddress.IPv6Address(name)
        except ValueError:
            raise Invalid(f"invalid IPv6 address {name!r}") from None
    else:
        name, sep, port = text.rpartition(":")
        if not sep or not name or ":" in name:
            raise Invalid(f'expected "HOST:PORT" such as "127.0.0.1:8470", got {text!r}')
        host(name)
    if not port.isdigit():
        raise Invalid(f"invalid port {port!r}")
    number = int(port)
    if not 0 <= number <= 65535:
        raise Invalid(f"port out of range (0-65535): {number}")
    return name, number


def _network(value: Any) -> str:
    if not isinstance(value, str):
        raise Invalid(f"expected a string, got {describe(value)}")
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        raise Invalid(
            f"expected an IP address or network such as '10.0.0.0/8', got {value!r}"
        ) from None


def _sha256(value: Any) -> str:
    if not isinstance(value, str) or not _SHA256.fullmatch(value):
        raise Invalid("expected the SHA-256 of the token as 64 lowercase hex digits")
    return value


def _scope(value: Any) -> str:
    if not isinstance(value, str):
        raise Invalid(f"expected a string, got {describe(value)}")
    if value not in TOKEN_SCOPES:
        raise Invalid(f"unknown scope {value!r} (known: {', '.join(sorted(TOKEN_SCOPES))})")
    return value


def _schedule(value: Any) -> str:
    """``daily HH:MM``, ``hourly`` or ``every DURATION``."""
    if not isinstance(value, str):
        raise Invalid(f"expected a string, got {describe(value)}")
    words = value.split()
    if words == ["hourly"]:
        return value
    if len(words) == 2 and words[0] == "daily" and _CLOCK.fullmatch(words[1]):
        return value
    if len(words) == 2 and words[0] == "every":
        try:
            if parse_duration(words[1]) > 0:
                return value
        except ValueError:
            pass
    raise Invalid(
        f'expected "daily HH:MM", "hourly" or "every DURATION" (such as "every 6h"), got {value!r}'
    )


def _fraction(value: Any) -> Decimal:
    if isinstance(value, float):
        raise Invalid(f'a rate must be a decimal string such as "0.5", not a float ({value!r})')
    if isinstance(value, Decimal):
        rate = value
    elif not isinstance(value, str):
        raise Invalid(f'expected a decimal string such as "0.5", got {describe(value)}')
    else:
        try:
            rate = Decimal(value.strip())
        except InvalidOperation:
            raise Invalid(f'expected a decimal string such as "0.5", got {value!r}') from None
    if not rate.is_finite() or not Decimal(0) <= rate <= Decimal(1):
        raise Invalid(f"must be between 0 and 1, got {value!r}")
    return rate


def _channel_ref(value: Any, info: ValidationInfo) -> str:
    """A configured channel's name (the root validator puts the names in the context)."""
    if not isinstance(value, str) or not value.strip():
        raise Invalid(f"expected a channel name, got {describe(value)}")
    known: set[str] = (info.context or {}).get("channels", set())
    if info.context is not None and value not in known:
        listed = ", ".join(sorted(known)) or "none defined"
        raise Invalid(f"no channel named {value!r} (channels: {listed})")
    return value


def _one_of_keys(choices: tuple[str, ...], what: str, plural: str) -> Check:
    def check(value: Any) -> str:
        if value not in choices:
            raise Invalid(f"unknown {what} {value!r} ({plural}: {', '.join(choices)})")
        return str(value)

    return Check(check, {"enum": list(choices)})


def _instance_name(what: str) -> Check:
    def check(value: Any) -> str:
        if not isinstance(value, str) or not _NAME.fullmatch(value):
            raise Invalid(f"invalid {what} name: use letters, digits, '_' and '-'")
        return value

    return Check(check, {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_-]*$"})


SocketPath = Annotated[Path, Check(_socket_path, {"type": "string"}, with_info=True)]
SocketMode = Annotated[int, Check(_socket_mode, {"type": ["string", "integer"]})]
Listen = Annotated[str, Check(_listen, {"type": "string", "examples": ["127.0.0.1:8470"]})]
Network = Annotated[str, Check(_network, {"type": "string", "examples": ["10.0.0.0/8"]})]
Sha256 = Annotated[str, Check(_sha256, {"type": "string", "pattern": "^[0-9a-f]{64}$"})]
Scope = Annotated[str, Check(_scope, {"enum": sorted(TOKEN_SCOPES)})]
Schedule = Annotated[str, Check(_schedule, {"type": "string", "examples": ["daily 03:00"]})]
Fraction = Annotated[Decimal, Check(_fraction, {"type": "string", "examples": ["0.75"]})]
ChannelRef = Annotated[str, Check(_channel_ref, {"type": "string"}, with_info=True)]
RoleName = Annotated[str, _one_of_keys(ROLES, "role", "roles are")]
AlertEvent = Annotated[str, _one_of_keys(ALERT_EVENTS, "event type", "known")]
ChannelName = Annotated[str, _instance_name("channel")]
ConnectorName = Annotated[str, _instance_name("connector instance")]
LogLevel = Annotated[str, choice(*LOG_LEVELS, fold_case=True)]
LogFormat = Annotated[str, choice(*LOG_FORMATS, fold_case=True)]


# --------------------------------------------------------------------------- sections


class DaemonConfig(Model):
    """``[daemon]``: where state and the admin socket live, defaults for the process."""

    state_dir: ConfigPath = DEFAULT_STATE_DIR
    admin_socket: SocketPath = DEFAULT_ADMIN_SOCKET
    admin_socket_mode: SocketMode = 0o660
    timezone: TimeZoneName = "UTC"
    shutdown_timeout: DurationOrZero = 30.0


class SupervisorConfig(Model):
    """``[supervisor]``: restart intensity (max_restarts within restart_window s), backoff."""

    max_restarts: NonNegativeInt = 5
    restart_window: Duration = 60.0
    backoff_initial: DurationOrZero = 0.1
    backoff_max: DurationOrZero = 5.0

    @classmethod
    def cross_checks(
        cls, raw: Mapping[str, Any], value: SupervisorConfig | None, info: ValidationInfo
    ) -> Problems:
        if value is not None and value.backoff_max < value.backoff_initial:
            return [(("backoff_max",), "must not be shorter than backoff_initial")]
        return []


class LogConfig(Model):
    """``[log]``: ``level`` is one of LOG_LEVELS, ``format`` one of LOG_FORMATS."""

    level: LogLevel = "info"
    format: LogFormat = "auto"


def _sqlite_path(url: str, base: Path) -> Path:
    if url.startswith(("postgresql:", "postgres:")):
        raise Invalid("PostgreSQL is not supported yet; use sqlite:///PATH")
    if url.startswith("sqlite://"):
        rest = url[len("sqlite://") :]
        if not rest.startswith("/") or rest == "/":
            raise Invalid(f"expected sqlite:///ABSOLUTE/PATH or sqlite:RELATIVE/PATH, got {url!r}")
        return Path(rest)
    if url.startswith("sqlite:"):
        rest = url[len("sqlite:") :]
        if not rest:
            raise Invalid("the sqlite URL names no file")
        path = Path(rest).expanduser()
        return path if path.is_absolute() else base / path
    raise Invalid(f"unsupported database URL {url!r} (expected sqlite:///PATH)")


def _store_url(value: Any, info: ValidationInfo) -> str:
    if not isinstance(value, str) or not value.strip():
        raise Invalid(f"expected a database URL such as sqlite:///PATH, got {describe(value)}")
    _sqlite_path(value, config_base(info))
    return value


StoreUrl = Annotated[str, Check(_store_url, {"type": "string"}, with_info=True)]


class StoreConfig(Model):
    """``[store]``: the database URL as written; ``path`` is the SQLite file it names."""

    url: StoreUrl = f"sqlite://{DEFAULT_STATE_DIR / 'promod.db'}"
    _base: Path = PrivateAttr(default_factory=Path.cwd)

    def model_post_init(self, context: Any) -> None:
        if isinstance(context, Mapping) and isinstance(context.get("base"), Path):
            self._base = context["base"]

    @property
    def path(self) -> Path:
        return _sqlite_path(self.url, self._base)


class RoleMapping(Model):
    """Users and groups (names) that hold one admin-socket role."""

    users: tuple[NonEmpty, ...] = ()
    groups: tuple[NonEmpty, ...] = ()


def _default_roles() -> dict[str, RoleMapping]:
    return {
        "admin": RoleMapping(users=("root",), groups=("promod-admin",)),
        "operator": RoleMapping(groups=("promod-ops",)),
        "viewer": RoleMapping(groups=("promod",)),
    }


class AdminConfig(Model):
    """``[admin.roles]``: always holds the keys admin, operator and viewer."""

    roles: dict[RoleName, RoleMapping] = Field(default_factory=_default_roles)

    @field_validator("roles")
    @classmethod
    def _every_role(cls, roles: dict[str, RoleMapping]) -> dict[str, RoleMapping]:
        return {role: roles.get(role, RoleMapping()) for role in ROLES}


PublicUrl = Annotated[
    str, Check(lambda value: http_url(value).rstrip("/"), {"type": "string", "format": "uri"})
]


class HttpToken(Model):
    """A bearer token of the HTTP API: only the hex SHA-256 of the token is kept."""

    name: Name
    sha256: Sha256
    scopes: frozenset[Scope]

    @classmethod
    def cross_checks(
        cls, raw: Mapping[str, Any], value: HttpToken | None, info: ValidationInfo
    ) -> Problems:
        if raw.get("scopes") == []:
            return [(("scopes",), "a token needs at least one scope")]
        return []


class HttpConfig(Model):
    """``[http]``: the integration API listener, its public URL and its tokens."""

    enabled: StrictBool = True
    listen: Listen = "127.0.0.1:8470"
    public_url: PublicUrl = "http://127.0.0.1:8470"
    trusted_proxies: tuple[Network, ...] = ()
    max_body: Size = 1024 * 1024
    tokens: tuple[HttpToken, ...] = ()
    max_connections: Annotated[int, between(1, 1_000_000)] = 4096  # open at most (fewer if
    # the descriptors are few)
    request_timeout: Duration = 10.0  # seconds for a request head to arrive, else closed

    @model_validator(mode="before")
    @classmethod
    def _public_url_default(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "public_url" not in data:
            try:
                name, port = split_listen(data.get("listen", "127.0.0.1:8470"))
            except (Invalid, TypeError):
                return data
            shown = f"[{name}]" if ":" in name else name
            return {**data, "public_url": f"http://{shown}:{port}"}
        return data

    @classmethod
    def cross_checks(
        cls, raw: Mapping[str, Any], value: HttpConfig | None, info: ValidationInfo
    ) -> Problems:
        found: Problems = []
        tokens = raw.get("tokens")
        if not isinstance(tokens, list):
            return found
        names: set[Any] = set()
        hashes: set[Any] = set()
        for index, token in enumerate(tokens):
            if not isinstance(token, Mapping):
                continue
            name, digest = token.get("name"), token.get("sha256")
            if isinstance(name, str) and name in names:
                found.append((("tokens", index, "name"), f"duplicate token name {name!r}"))
            if isinstance(digest, str) and digest in hashes:
                found.append((("tokens", index, "sha256"), "the same token is listed twice"))
            names.add(name)
            hashes.add(digest)
        return found

    @property
    def host(self) -> str:
        return split_listen(self.listen)[0]

    @property
    def port(self) -> int:
        return split_listen(self.listen)[1]


class PluginsConfig(Model):
    """``[plugins]``: extra plugin directories and plugin names not to load."""

    dirs: tuple[ConfigPath, ...] = ()
    disable: tuple[NonEmpty, ...] = ()
    circuit_threshold: Annotated[int, between(1, 1000)] = 5
    circuit_window: Duration = 60.0  # failures in a row within this many seconds
    circuit_cooldown: Duration = 30.0  # seconds open before one probe call is let through


class ChannelConfig(Model):
    """``[channels.NAME]``: a channel instance; ``options`` are every key but ``type``.

    The options are checked, and completed with their defaults, by the options
    model of the plugin that provides ``type`` (durations as seconds).
    """

    name: str
    type: NonEmpty
    options: dict[str, Any] = Field(default_factory=dict)


class WebhooksConfig(Model):
    """``[webhooks]``: channel names that receive clearance and other events."""

    clearance: ChannelRef | None = None
    events: ChannelRef | None = None


class NotifyConfig(Model):
    """``[notify]``: how the notifier retries deliveries and where templates live.

    A failed delivery is retried after ``backoff_initial`` doubling up to
    ``backoff_max`` (with jitter), at most ``max_attempts`` times in all, then
    dead-lettered. ``templates_dir`` holds ``NAME.toml`` files for campaigns'
    ``notify.template``; None means ``templates`` next to the config file.
    """

    max_attempts: Annotated[int, between(1, 1000)] = 10
    backoff_initial: Duration = 5.0
    backoff_max: Duration = 3600.0
    poll_interval: Duration = 1.0
    batch_size: Annotated[int, between(1, 10000)] = 200
    templates_dir: ConfigPath | None = None

    @classmethod
    def cross_checks(
        cls, raw: Mapping[str, Any], value: NotifyConfig | None, info: ValidationInfo
    ) -> Problems:
        if value is not None and value.backoff_max < value.backoff_initial:
            return [(("backoff_max",), "must not be shorter than backoff_initial")]
        return []


class FrequencyCap(Model):
    """At most ``max`` rewards per customer in ``days`` days, across campaigns."""

    max: PositiveInt
    days: PositiveInt


def _budget_money(value: Any, info: ValidationInfo) -> int:
    """A budget in the currency the table is for (``context["currency"]``), in minor units.

    Code that builds a budget itself (no validation context) gives minor units.
    """
    if info.context is None and isinstance(value, int) and not isinstance(value, bool):
        return value
    currency = (info.context or {}).get("currency", "EUR")
    exponent = currency_exponent(currency)
    if isinstance(value, float):
        raise Invalid(f'money must be a decimal string such as "5.00", not a float ({value!r})')
    if not isinstance(value, str):
        raise Invalid(f'money must be a decimal string such as "5.00", got {describe(value)}')
    try:
        return parse_money(value, exponent)
    except ValueError as exc:
        if exponent == 0 and "." in value:
            raise Invalid(
                f"{currency} has no minor unit: write whole {currency}, got {value!r}"
            ) from None
        raise Invalid(str(exc)) from None


BudgetMoney = Annotated[
    int, Check(_budget_money, {"type": "string", "examples": ["5000.00"]}, with_info=True)
]


class ProviderBudget(Model):
    """Spend limits for one reward provider in one currency, across campaigns.

    In minor units of that currency (``EUR`` cents, whole ``JPY``).
    """

    lifetime: BudgetMoney | None = None
    daily: BudgetMoney | None = None

    @classmethod
    def cross_checks(
        cls, raw: Mapping[str, Any], value: ProviderBudget | None, info: ValidationInfo
    ) -> Problems:
        if "lifetime" not in raw and "daily" not in raw:
            return [((), "set lifetime and/or daily")]
        return []


def _budgets_by_currency(value: Any, info: ValidationInfo) -> dict[str, ProviderBudget]:
    """``[policy.budgets.PROVIDER]``: one budget table per ISO 4217 currency code."""
    if not isinstance(value, Mapping):
        raise Invalid(f"expected a table, got {describe(value)}")
    if all(isinstance(item, ProviderBudget) for item in value.values()):
        return dict(value)  # built in code
    budgets: dict[str, ProviderBudget] = {}
    problems: list[tuple[tuple[str | int, ...], str]] = []
    errors: list[tuple[tuple[str | int, ...], ValidationError]] = []
    for currency, table in value.items():
        if currency in ("lifetime", "daily"):
            continue  # PolicyConfig.cross_checks names the provider in its message
        if not isinstance(currency, str) or not _CURRENCY.fullmatch(currency):
            problems.append(
                ((currency,), f"expected an ISO 4217 currency code such as EUR, got {currency!r}")
            )
            continue
        context = {**(info.context or {}), "currency": currency}
        try:
            budgets[currency] = ProviderBudget.model_validate(table, context=context)
        except ValidationError as exc:
            errors.append(((currency,), exc))
    if problems or errors:
        raise all_of(problems, errors)
    return budgets


BudgetsByCurrency = Annotated[
    dict[str, ProviderBudget],
    Check(_budgets_by_currency, {"type": "object"}, with_info=True),
]


class PolicyConfig(Model):
    """``[policy]``: site-wide frequency cap and budgets per reward provider and currency.

    ``budgets["wallet_points"]["EUR"]`` is the budget of ``[policy.budgets.wallet_points]``
    ``EUR = {...}``; spend in one currency never counts against another's budget.
    """

    frequency: FrequencyCap | None = None
    budgets: dict[str, BudgetsByCurrency] = Field(default_factory=dict)

    @classmethod
    def cross_checks(
        cls, raw: Mapping[str, Any], value: PolicyConfig | None, info: ValidationInfo
    ) -> Problems:
        budgets = raw.get("budgets")
        if not isinstance(budgets, Mapping):
            return []
        found: Problems = []
        for provider, table in budgets.items():
            for key in ("lifetime", "daily"):
                if isinstance(table, Mapping) and key in table:
                    where = join_path(("policy", "budgets", provider))
                    found.append(
                        (
                            ("budgets", provider, key),
                            "a budget names its currency: write"
                            f' [{where}] EUR = {{ {key} = "..." }}',
                        )
                    )
        return found


class FraudConfig(Model):
    """``[fraud]``: redemption rate limits and how long an offender is blocked (seconds)."""

    redemptions_per_ip_per_hour: PositiveInt = 20
    redemptions_per_customer_per_hour: PositiveInt = 5
    failed_redemptions_per_ip_per_hour: PositiveInt = 10
    block_for: Duration = 3600.0


class LedgerConfig(Model):
    """``[ledger]``: how grants are batched and how outside providers are called."""

    batch_size: Annotated[int, between(1, 100_000)] = 1000
    provider_timeout: Duration = 10.0
    provider_max_attempts: Annotated[int, between(1, 100)] = 5
    provider_retry: Duration = 1.0


class ClearanceConfig(Model):
    """``[clearance]``: a run approved below ``min_approval_rate`` (0..1) raises an alert."""

    min_approval_rate: Fraction | None = None


_DAY = 86400.0


def _retention(value: Any) -> float:
    seconds = float(value)
    if not 14 * _DAY <= seconds <= 30 * _DAY:
        raise ValueError(f"must be between 14d and 30d, got {value!r}")
    return seconds


class CrmConfig(Model):
    """``[crm.NAME]``: a CRM connector feeding one list under one consent.

    ``options`` are its connector's own keys, checked by the options model its type
    declares (promod.plugins.options). ``list_name`` is ``list``, default ``crm-NAME``.
    """

    name: str
    connector: NonEmpty
    consent: NonEmpty
    list_: NonEmpty | None = Field(default=None, alias="list")
    schedule: Schedule = "daily 03:00"
    media_type: NonEmpty = "email"
    max_change: Fraction = Decimal("0.2")
    responses: Schedule = "daily 04:00"
    response_retention: Annotated[Duration, AfterValidator(_retention)] = 30 * _DAY
    options: dict[str, Any] = Field(default_factory=dict)

    @property
    def list_name(self) -> str:
        return self.list_ or f"crm-{self.name}"


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
"""The keys of ``[crm.NAME]`` promod reads itself; the rest are the connector's options."""


def _instances(
    data: Any, own: tuple[str, ...]
) -> Any:  # {name: table} -> {name: {name, own keys..., options: the rest}}
    if not isinstance(data, Mapping):
        return data
    out: dict[Any, Any] = {}
    for name, table in data.items():
        if not isinstance(table, Mapping):
            out[name] = table
            continue
        entry: dict[str, Any] = {key: table[key] for key in own if key in table}
        entry["name"] = name
        entry["options"] = {key: item for key, item in table.items() if key not in own}
        out[name] = entry
    return out


class Config(Model):
    """The whole validated configuration; ``source`` is the file it was read from."""

    daemon: DaemonConfig = Field(default_factory=DaemonConfig)
    supervisor: SupervisorConfig = Field(default_factory=SupervisorConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    admin: AdminConfig = Field(default_factory=AdminConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)
    plugins: PluginsConfig = Field(default_factory=PluginsConfig)
    channels: dict[ChannelName, ChannelConfig] = Field(default_factory=dict)
    webhooks: WebhooksConfig = Field(default_factory=WebhooksConfig)
    alerts: dict[AlertEvent, tuple[ChannelRef, ...]] = Field(default_factory=dict)
    notify: NotifyConfig = Field(default_factory=NotifyConfig)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    fraud: FraudConfig = Field(default_factory=FraudConfig)
    ledger: LedgerConfig = Field(default_factory=LedgerConfig)
    clearance: ClearanceConfig = Field(default_factory=ClearanceConfig)
    crm: dict[ConnectorName, CrmConfig] = Field(default_factory=dict)
    source: Path = Field(default=DEFAULT_CONFIG_PATH, exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _prepare(cls, data: Any, info: ValidationInfo) -> Any:
        """Channel names for references, instance tables split, the store's default URL."""
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        channels = data.get("channels")
        if info.context is not None:
            info.context["channels"] = set(channels) if isinstance(channels, Mapping) else set()
        if "channels" in data:
            data["channels"] = _instances(channels, ("type",))
        if "crm" in data:
            data["crm"] = _instances(data["crm"], CRM_KEYS)
        store = data.get("store", {})
        daemon = data.get("daemon", {})
        if isinstance(store, Mapping) and "url" not in store and isinstance(daemon, Mapping):
            state_dir = daemon.get("state_dir")
            if isinstance(state_dir, str) and state_dir.strip():
                base = (info.context or {}).get("base", Path.cwd())
                path = Path(state_dir).expanduser()
                resolved = path if path.is_absolute() else base / path
                data["store"] = {**store, "url": f"sqlite://{resolved / 'promod.db'}"}
        return data


# --------------------------------------------------------------------------- entry points


def resolve_config_path(cli_value: str | None, *, environ: Mapping[str, str] | None = None) -> Path:
    """The config file to use: ``--config``, else ``$PROMOD_CONFIG``, else DEFAULT_CONFIG_PATH."""
    if cli_value:
        return Path(cli_value)
    env = os.environ if environ is None else environ
    from_env = env.get(CONFIG_ENV, "")
    return Path(from_env) if from_env else DEFAULT_CONFIG_PATH


def load_config(
    path: Path, *, plugins: PluginTypes | None = None, plugin_options: bool = True
) -> Config:
    """Read and validate the TOML file at ``path``; raise ConfigError listing every issue.

    ``plugins`` provides the channel and connector types whose options models check
    ``[channels.*]`` and ``[crm.*]``; by default they are loaded as the file's
    ``[plugins]`` section says (built-ins, entry points, ``plugins.dirs``).
    ``plugin_options=False`` skips those checks and loads no plugin (for the
    offline database tools); the options are then kept as written.
    """
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
    return parse_config_text(text, source, plugins=plugins, plugin_options=plugin_options)


def parse_config_text(
    text: str,
    source: Path,
    *,
    plugins: PluginTypes | None = None,
    plugin_options: bool = True,
) -> Config:
    """Parse TOML text as if read from ``source``; syntax errors carry line and column."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([_syntax_issue(exc)], source) from None
    except RecursionError:
        issue = ConfigIssue("", "arrays or tables are nested too deeply to read")
        raise ConfigError([issue], source) from None
    return parse_config(data, source, plugins=plugins, plugin_options=plugin_options)


def load_plugin_types(
    data: Mapping[str, Any], context: Mapping[str, Any]
) -> tuple[PluginTypes | None, Issue | None]:
    """The plugin host the ``[plugins]`` section of ``data`` describes (for option checks).

    An invalid ``[plugins]`` section loads the built-in and installed plugins only
    (the section's own errors are reported by its model); a plugin that fails to
    load is an issue at ``plugins``.
    """
    from promod.plugins.host import PluginError, PluginHost

    section = data.get("plugins", {})
    try:
        plugins = PluginsConfig.model_validate(section, context=dict(context))
    except ValidationError:
        plugins = PluginsConfig()
    try:
        return PluginHost.load(plugins.dirs, plugins.disable), None
    except PluginError as exc:
        return None, ("plugins", str(exc))


def parse_config(
    data: dict[str, Any],
    source: Path,
    *,
    plugins: PluginTypes | None = None,
    plugin_options: bool = True,
) -> Config:
    """Validate parsed TOML ``data``; relative paths resolve against ``source``'s directory."""
    from promod.plugins.options import check_instance_options

    source = Path(source).expanduser().absolute()
    context: dict[str, Any] = {"base": source.parent}
    issues: list[Issue] = []
    config: Config | None = None
    if "source" in data:  # not a key of the file: where it was read from
        issues.append(("source", "unknown key"))
        data = {key: value for key, value in data.items() if key != "source"}
    try:
        config = Config.model_validate(data, context=context)
    except ValidationError as exc:
        issues.extend(issues_of(exc, CONFIG_WORDS))
    types = plugins
    if types is None and plugin_options:
        types, problem = load_plugin_types(data, context)
        if problem is not None:
            issues.append(problem)
    if types is not None:
        checked, option_issues = check_instance_options(data, types, context, CRM_KEYS)
        issues.extend(option_issues)
        if config is not None and not option_issues:
            config = config.model_copy(
                update={
                    "channels": {
                        name: channel.model_copy(update={"options": checked.channels[name]})
                        for name, channel in config.channels.items()
                    },
                    "crm": {
                        name: crm.model_copy(update={"options": checked.crm[name]})
                        for name, crm in config.crm.items()
                    },
                }
            )
            issues.extend(checked.route_issues(config))
    if issues or config is None:
        raise ConfigError([ConfigIssue(path, message) for path, message in issues], source)
    return config.model_copy(update={"source": source})


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
