"""The built-in ``smtp`` channel: campaign mails and operator alerts over SMTP (aiosmtplib).

Options (the :class:`SmtpOptions` model): host, port, tls (none | starttls |
implicit), from, username, password or password_env, timeout, rate and burst
(a token bucket: messages per second on average, how many at once after a quiet
spell; paced by the notifier), connections (SMTP sessions kept open at once,
default 4: the notifier sends that many mails in parallel, one per session),
alerts_to (operators who get alerts), unsubscribe_mailto (an address also
offered in ``List-Unsubscribe``). A session is reused for mail after mail; it
is closed after ``IDLE_CLOSE`` seconds without a send and re-opened on demand.
aiosmtplib waits for each answer before the next command, so PIPELINING is not
used even where the server offers it; the sessions in parallel make up for it::

    channel = SmtpChannelType().create("mail", config.channels["mail"].options)
    await channel.send(message)
    await channel.close()

A customer message (see promod.notify.mailformat) becomes
``multipart/alternative`` (text and HTML parts) with the bulk headers
``List-Id: <CAMPAIGN.sender-domain>``, ``Precedence: bulk``,
``List-Unsubscribe: <https://...>`` (plus ``<mailto:...>`` when configured) in
plain ASCII, never RFC 2047-encoded, and ``List-Unsubscribe-Post:
List-Unsubscribe=One-Click`` (RFC 8058). Its ``Message-ID`` is derived from the
event id, kind and channel (``<reward.granted%3A42+message+mail@example.org>``:
characters a msg-id cannot hold are %-escaped, so it is valid and unique per
mail) and ``Promod-Event-Id`` carries the event id as it is.

A 5xx answer is permanent; one at RCPT or DATA time for a customer message is a
hard bounce (``PermanentFailure(bounced=True)``: the notifier suppresses the
address at once). 4xx answers and network errors are temporary (retried later).
"""

from __future__ import annotations

import email.policy
import os
import re
import time
from collections.abc import Mapping
from email.headerregistry import BaseHeader, HeaderRegistry, UniqueUnstructuredHeader
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from typing import Annotated, Any

import aiosmtplib
import anyio
from pydantic import Field, ValidationInfo, model_validator

from promod.logs import get_logger
from promod.notify.channel import (
    Channel,
    ChannelError,
    Message,
    PermanentFailure,
    TemporaryFailure,
)
from promod.notify.mailformat import (
    ONE_CLICK,
    UNSUBSCRIBE_HEADERS,
    compose_email,
    fold_list_unsubscribe,
    list_id,
    list_unsubscribe,
    message_id,
)
from promod.schema import (
    Check,
    Duration,
    EnvName,
    Host,
    Invalid,
    Model,
    NonEmpty,
    Port,
    PositiveNumber,
    Problems,
    Sender,
    between,
    choice,
    describe,
)

__all__ = [
    "SMTP_TLS_MODES",
    "SmtpChannel",
    "SmtpChannelType",
    "SmtpOptions",
    "build_email",
    "list_id",
    "list_unsubscribe",
    "message_id",
]

log = get_logger("promod.notify.smtp")

IDLE_CLOSE = 30.0  # seconds a kept connection may sit unused
DEFAULT_CONNECTIONS = 4  # SMTP sessions a channel keeps open at most
SMTP_TLS_MODES = ("none", "starttls", "implicit")
_DEFAULT_PORTS = {"none": 25, "starttls": 587, "implicit": 465}


class ListUnsubscribeHeader(UniqueUnstructuredHeader, BaseHeader):  # type: ignore[misc]
    """``List-Unsubscribe`` written as it is: plain ASCII, folded only between its URIs.

    The default policy would RFC 2047-encode a URL longer than a line, and mail
    clients then find no link to offer.
    """

    def fold(self, *, policy: Any) -> str:
        return fold_list_unsubscribe(self.name, str(self), str(policy.linesep))


_HEADERS = HeaderRegistry()
_HEADERS.map_to_type("list-unsubscribe", ListUnsubscribeHeader)
POLICY = email.policy.SMTP.clone(header_factory=_HEADERS)


_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9.!#$*+\-/=^_`{|}~']+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")


def _plain_address(text: str) -> bool:
    """``user@domain`` in ASCII, with nothing a mailto URI would have to escape."""
    return bool(_PLAIN_ADDRESS.fullmatch(text))


def _mailto_address(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise Invalid(f"expected a string, got {describe(value)}")
    if not _plain_address(value):
        raise Invalid(f"expected a plain address such as 'unsubscribe@example.org', got {value!r}")
    return value


PlainAddress = Annotated[
    str, Check(_mailto_address, {"type": "string", "examples": ["unsubscribe@example.org"]})
]


class SmtpOptions(Model):
    """``[channels.NAME]`` of ``type = "smtp"``: the server, the sender, who gets alerts."""

    host: Host = "localhost"
    port: Port = Field(default=587, description="default: 25, 587 or 465 by tls")
    tls: Annotated[str, choice(*SMTP_TLS_MODES)] = "starttls"
    from_: Sender = Field(alias="from")
    username: NonEmpty | None = None
    password: Annotated[str, Field(strict=True)] | None = None
    password_env: EnvName | None = None
    timeout: Duration = 30.0
    rate: PositiveNumber | None = Field(
        default=None, description="messages per second on average (token bucket)"
    )
    burst: PositiveNumber | None = Field(
        default=None, description="messages at once after a quiet spell (default: rate)"
    )
    connections: Annotated[int, between(1, 64)] = Field(
        default=DEFAULT_CONNECTIONS, description="SMTP sessions kept open and used at once"
    )
    alerts_to: tuple[Sender, ...] = Field(default=(), description="operators who get alerts")
    unsubscribe_mailto: PlainAddress | None = Field(
        default=None, description="also offered in List-Unsubscribe"
    )

    @model_validator(mode="before")
    @classmethod
    def _port_follows_tls(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "port" not in data:
            tls = data.get("tls", "starttls")
            return {**data, "port": _DEFAULT_PORTS.get(tls, 587) if isinstance(tls, str) else 587}
        return data

    @classmethod
    def cross_checks(
        cls, raw: Mapping[str, Any], value: SmtpOptions | None, info: ValidationInfo
    ) -> Problems:
        if "password" in raw and "password_env" in raw:
            return [(("password_env",), "set only one of password and password_env")]
        return []


def _alert_text(message: Message) -> str:
    lines = [f"promod alert: {message.type}", ""]
    for key, value in message.data.items():
        lines.append(f"{key}: {value}")
    return "\n".join(lines) + "\n"


def build_email(
    message: Message,
    sender: str,
    recipients: tuple[str, ...],
    channel: str,
    *,
    unsubscribe_mailto: str | None = None,
) -> EmailMessage:
    """The RFC 5322 message for ``message`` (customer message or alert)."""
    mail = EmailMessage(policy=POLICY)
    mail["From"] = sender
    mail["To"] = ", ".join(recipients)
    mail["Date"] = formatdate(localtime=False, usegmt=True)
    mail["Message-ID"] = message_id(message.event_id, message.kind, channel, sender)
    mail["Promod-Event-Id"] = message.event_id
    if message.kind == "message":
        mail["Subject"] = message.subject or ""
        own = message.unsubscribe_url is not None
        for name, value in message.headers.items():
            if not (own and name.lower() in UNSUBSCRIBE_HEADERS):
                mail[name] = value
        if message.unsubscribe_url is not None:
            mail["List-Unsubscribe"] = list_unsubscribe(message.unsubscribe_url, unsubscribe_mailto)
            mail["List-Unsubscribe-Post"] = ONE_CLICK
        for header in mail.get_all("List-Unsubscribe") or ():
            header.fold(policy=POLICY)  # refuses what could not go out as written
        if "List-Id" not in mail:
            mail["List-Id"] = list_id(message, channel, sender)
        if "Precedence" not in mail:
            mail["Precedence"] = "bulk"
        text = message.text
        html = message.html
        if text is not None:
            mail.set_content(text)
            if html is not None:
                mail.add_alternative(html, subtype="html")
        elif html is not None:
            mail.set_content(html, subtype="html")
        else:
            mail.set_content("")
    else:
        subject = f"[promod] {message.type}"
        campaign = message.data.get("campaign_id")
        if campaign:
            subject += f" ({campaign})"
        mail["Subject"] = subject
        mail.set_content(_alert_text(message))
    return mail


class _Connection:
    """One open SMTP session of the channel's pool, with when it was last used."""

    def __init__(self, smtp: aiosmtplib.SMTP, number: int) -> None:
        self.smtp = smtp
        self.number = number
        self.last_used = time.monotonic()


class SmtpChannel:
    """One SMTP server; up to ``connections`` sessions kept open, one mail on each at a time."""

    def __init__(self, name: str, options: Mapping[str, Any]) -> None:
        self.name = name
        self.host = str(options.get("host", "localhost"))
        self.tls = str(options.get("tls", "starttls"))
        self.port = int(options.get("port") or {"implicit": 465, "starttls": 587}.get(self.tls, 25))
        self.sender = str(options.get("from") or "")
        if "@" not in parseaddr(self.sender)[1]:
            raise ChannelError(f"channel {name!r}: 'from' must be an email address")
        self.username: str | None = options.get("username")
        password: str | None = options.get("password")
        env = options.get("password_env")
        if env:
            password = os.environ.get(str(env))
            if password is None:
                raise ChannelError(f"channel {name!r}: environment variable {env} is not set")
        self._password = password
        self.timeout = float(options.get("timeout") or 30.0)
        rate = options.get("rate")
        self.rate: float | None = float(rate) if rate else None
        burst = options.get("burst")
        self.burst: float | None = float(burst) if burst else None
        self.connections = int(options.get("connections") or DEFAULT_CONNECTIONS)
        if self.connections < 1:
            raise ChannelError(f"channel {name!r}: 'connections' must be at least 1")
        self.concurrency = self.connections
        self.alerts_to: tuple[str, ...] = tuple(options.get("alerts_to") or ())
        mailto = options.get("unsubscribe_mailto")
        self.unsubscribe_mailto: str | None = str(mailto) if mailto else None
        if mailto and not _plain_address(str(mailto)):
            raise ChannelError(
                f"channel {name!r}: 'unsubscribe_mailto' must be a plain ASCII address"
            )
        self._envelope_from = parseaddr(self.sender)[1]
        self._idle: list[_Connection] = []
        self._slots = anyio.Semaphore(self.connections)
        self._opened = 0  # sessions opened since start (numbers them)

    def __repr__(self) -> str:
        return f"<SmtpChannel {self.name!r} {self.host}:{self.port} tls={self.tls}>"

    async def _connect(self) -> _Connection:
        smtp = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            use_tls=self.tls == "implicit",
            start_tls=self.tls == "starttls",
            timeout=self.timeout,
        )
        await smtp.connect()
        if self.username:
            await smtp.login(self.username, self._password or "")
        self._opened += 1
        return _Connection(smtp, self._opened)

    @staticmethod
    async def _drop(conn: _Connection | None) -> None:
        if conn is None:
            return
        try:
            with anyio.move_on_after(2):
                await conn.smtp.quit()
        except Exception:
            conn.smtp.close()

    def _take_idle(self) -> tuple[_Connection | None, list[_Connection]]:
        """A kept session to reuse (the most recent), and those idle too long to keep."""
        stale: list[_Connection] = []
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if now - conn.last_used > IDLE_CLOSE or not conn.smtp.is_connected:
                stale.append(conn)
                continue
            return conn, stale
        return None, stale

    async def send(self, message: Message) -> None:
        if message.kind == "message":
            if not message.to:
                raise PermanentFailure("the customer has no email address")
            recipients: tuple[str, ...] = (message.to,)
        else:
            if not self.alerts_to:
                raise PermanentFailure(f"channel {self.name!r} has no alerts_to recipients")
            recipients = self.alerts_to
        mail: bytes | EmailMessage | None
        try:
            mail = compose_email(
                message,
                self.sender,
                recipients,
                self.name,
                unsubscribe_mailto=self.unsubscribe_mailto,
            )
            if mail is None:  # addresses that are not ASCII: the email package's SMTPUTF8 path
                mail = build_email(
                    message,
                    self.sender,
                    recipients,
                    self.name,
                    unsubscribe_mailto=self.unsubscribe_mailto,
                )
        except (ValueError, TypeError) as exc:
            raise PermanentFailure(f"cannot build the email: {exc}") from None
        async with self._slots:
            await self._send(mail, recipients, message.kind == "message")

    async def _send(
        self, mail: bytes | EmailMessage, recipients: tuple[str, ...], customer: bool
    ) -> None:
        conn, stale = self._take_idle()
        for old in stale:
            await self._drop(old)
        reused = conn is not None
        keep = False
        try:
            for attempt in (1, 2):
                try:
                    if conn is None:
                        conn = await self._connect()
                    if isinstance(mail, bytes):
                        errors, _ = await conn.smtp.sendmail(
                            self._envelope_from, list(recipients), mail
                        )
                    else:
                        errors, _ = await conn.smtp.send_message(
                            mail, sender=self._envelope_from, recipients=list(recipients)
                        )
                    keep = True
                    if errors and customer:
                        code, text = next(iter(errors.values()))
                        raise PermanentFailure(f"recipient refused: {code} {text}", bounced=True)
                    return
                except aiosmtplib.SMTPServerDisconnected as exc:
                    await self._drop(conn)
                    conn = None
                    if attempt == 1 and reused:
                        continue  # a kept session the server had closed: one fresh try
                    raise TemporaryFailure(f"smtp disconnected: {exc}") from None
                except aiosmtplib.SMTPRecipientsRefused as exc:
                    keep = True  # aiosmtplib sent RSET: the session can carry the next mail
                    codes = [r.code for r in exc.recipients]
                    detail = "; ".join(f"{r.code} {r.message}" for r in exc.recipients)
                    if codes and all(code >= 500 for code in codes):
                        raise PermanentFailure(
                            f"recipient refused: {detail}", bounced=customer
                        ) from None
                    raise TemporaryFailure(f"recipient deferred: {detail}") from None
                except aiosmtplib.SMTPResponseException as exc:
                    keep = not isinstance(exc, aiosmtplib.SMTPAuthenticationError)
                    if exc.code >= 500 and keep:
                        bounced = customer and isinstance(exc, aiosmtplib.SMTPDataError)
                        raise PermanentFailure(
                            f"smtp {exc.code}: {exc.message}", bounced=bounced
                        ) from None
                    raise TemporaryFailure(f"smtp {exc.code}: {exc.message}") from None
                except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                    raise TemporaryFailure(f"smtp: {type(exc).__name__}: {exc}") from None
            raise TemporaryFailure("smtp: connection lost")  # pragma: no cover
        finally:
            if conn is not None:
                if keep and conn.smtp.is_connected:
                    conn.last_used = time.monotonic()
                    self._idle.append(conn)
                else:
                    with anyio.CancelScope(shield=True):
                        await self._drop(conn)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await self._drop(conn)


class SmtpChannelType:
    """Factory registered as channel type ``smtp``."""

    type = "smtp"
    options_model = SmtpOptions

    def create(self, name: str, options: Mapping[str, Any]) -> Channel:
        return SmtpChannel(name, options)

    def route_problem(self, name: str, options: Mapping[str, Any]) -> str | None:
        """Alerts and events sent here need recipients: ``alerts_to``."""
        if not options.get("alerts_to"):
            return f"channel {name!r} is smtp: set channels.{name}.alerts_to to send there"
        return None
