"""The built-in ``smtp`` channel: campaign mails and operator alerts over SMTP (aiosmtplib).

Options (the :class:`SmtpOptions` model): host, port, tls (none | starttls |
implicit), from, username, password or password_env, timeout, rate (messages
per second, paced by the notifier), alerts_to (operators who get alerts),
unsubscribe_mailto (an address also offered in ``List-Unsubscribe``). One
connection is kept open and reused for a batch; it is closed after ``idle``
seconds without a send and re-opened on demand::

    channel = SmtpChannelType().create("mail", config.channels["mail"].options)
    await channel.send(message)
    await channel.close()

A customer message becomes ``multipart/alternative`` (text and HTML parts) with
``List-Unsubscribe: <https://...>`` (plus ``<mailto:...>`` when configured) in
plain ASCII, never RFC 2047-encoded, and ``List-Unsubscribe-Post:
List-Unsubscribe=One-Click`` (RFC 8058). Its ``Message-ID`` is derived from the
event id, kind and channel (``<reward.granted%3A42+message+mail@example.org>``:
characters a msg-id cannot hold are %-escaped, so it is valid and unique per
mail) and ``Promod-Event-Id`` carries the event id as it is. 5xx answers are
permanent (a refused recipient is reported as bounced and suppressed), 4xx
answers and network errors temporary.
"""

from __future__ import annotations

import email.policy
import os
import re
import string
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
    choice,
    describe,
)

__all__ = [
    "SMTP_TLS_MODES",
    "SmtpChannel",
    "SmtpChannelType",
    "SmtpOptions",
    "build_email",
    "list_unsubscribe",
    "message_id",
]

log = get_logger("promod.notify.smtp")

IDLE_CLOSE = 30.0  # seconds a kept connection may sit unused
SMTP_TLS_MODES = ("none", "starttls", "implicit")
_DEFAULT_PORTS = {"none": 25, "starttls": 587, "implicit": 465}


ONE_CLICK = "List-Unsubscribe=One-Click"
MAX_LINE = 998  # RFC 5322 2.1.1: no line of a message may be longer
_UNSUBSCRIBE_HEADERS = frozenset({"list-unsubscribe", "list-unsubscribe-post"})
_ID_SAFE = frozenset(string.ascii_letters + string.digits + "-_.")
_ANGLED = re.compile(r"<[^<>\s]+>")
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9.!#$*+\-/=^_`{|}~']+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")


def _domain(sender: str) -> str:
    domain = parseaddr(sender)[1].rpartition("@")[2]
    try:
        return domain.encode("idna").decode("ascii") if domain else "promod.invalid"
    except UnicodeError:
        return "promod.invalid"


def _id_part(text: str) -> str:
    """``text`` as dot-atom text: anything else (and a dot at an edge or after a dot) %-escaped.

    The escaping is reversible, and ``+`` and ``%`` are always escaped, so parts
    joined with ``+`` name exactly one (event, kind, channel).
    """
    out: list[str] = []
    for i, ch in enumerate(text):
        dot_ok = ch != "." or (0 < i < len(text) - 1 and text[i - 1] != ".")
        if ch in _ID_SAFE and dot_ok:
            out.append(ch)
        else:
            out.extend(f"%{byte:02X}" for byte in ch.encode("utf-8"))
    return "".join(out) or "%00"


def message_id(event_id: str, kind: str, channel: str, sender: str) -> str:
    """A valid RFC 5322 msg-id, the same for every retry of one delivery, unique per delivery."""
    left = "+".join(_id_part(part) for part in (event_id, kind, channel))
    return f"<{left}@{_domain(sender)}>"


def list_unsubscribe(url: str, mailto: str | None = None) -> str:
    """The ``List-Unsubscribe`` value: the one-click URL first, then the mailto (RFC 2369)."""
    uris = [f"<{url}>"]
    if mailto:
        uris.append(f"<mailto:{mailto}?subject=unsubscribe>")
    return ", ".join(uris)


class ListUnsubscribeHeader(UniqueUnstructuredHeader, BaseHeader):  # type: ignore[misc]
    """``List-Unsubscribe`` written as it is: plain ASCII, folded only between its URIs.

    The default policy would RFC 2047-encode a URL longer than a line, and mail
    clients then find no link to offer.
    """

    def fold(self, *, policy: Any) -> str:
        value = str(self)
        uris = _ANGLED.findall(value)
        rest = _ANGLED.sub("", value)
        if not value.isascii() or not uris or not re.fullmatch(r"[\s,]*", rest):
            raise ValueError(f"List-Unsubscribe must be ASCII <URI>s, got {value!r}")
        lines = [f"{self.name}: {uris[0]}", *(f" {uri}" for uri in uris[1:])]
        if any(len(line) + 1 > MAX_LINE for line in lines):
            raise ValueError("List-Unsubscribe: a URI is longer than a mail line may be")
        linesep = str(policy.linesep)
        return f",{linesep}".join(lines) + linesep


_HEADERS = HeaderRegistry()
_HEADERS.map_to_type("list-unsubscribe", ListUnsubscribeHeader)
POLICY = email.policy.SMTP.clone(header_factory=_HEADERS)


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
    rate: PositiveNumber | None = Field(default=None, description="messages per second")
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
            if not (own and name.lower() in _UNSUBSCRIBE_HEADERS):
                mail[name] = value
        if message.unsubscribe_url is not None:
            mail["List-Unsubscribe"] = list_unsubscribe(message.unsubscribe_url, unsubscribe_mailto)
            mail["List-Unsubscribe-Post"] = ONE_CLICK
        for header in mail.get_all("List-Unsubscribe") or ():
            header.fold(policy=POLICY)  # refuses what could not go out as written
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


class SmtpChannel:
    """One SMTP server; sends one message at a time over a reused connection."""

    concurrency = 1

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
        self.alerts_to: tuple[str, ...] = tuple(options.get("alerts_to") or ())
        mailto = options.get("unsubscribe_mailto")
        self.unsubscribe_mailto: str | None = str(mailto) if mailto else None
        if mailto and not _plain_address(str(mailto)):
            raise ChannelError(
                f"channel {name!r}: 'unsubscribe_mailto' must be a plain ASCII address"
            )
        self._smtp: aiosmtplib.SMTP | None = None
        self._last_used = 0.0
        self._lock = anyio.Lock()

    def __repr__(self) -> str:
        return f"<SmtpChannel {self.name!r} {self.host}:{self.port} tls={self.tls}>"

    async def _connect(self) -> aiosmtplib.SMTP:
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
        return smtp

    async def _drop(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        try:
            with anyio.move_on_after(2):
                await smtp.quit()
        except Exception:
            smtp.close()

    async def send(self, message: Message) -> None:
        if message.kind == "message":
            if not message.to:
                raise PermanentFailure("the customer has no email address")
            recipients: tuple[str, ...] = (message.to,)
        else:
            if not self.alerts_to:
                raise PermanentFailure(f"channel {self.name!r} has no alerts_to recipients")
            recipients = self.alerts_to
        try:
            mail = build_email(
                message,
                self.sender,
                recipients,
                self.name,
                unsubscribe_mailto=self.unsubscribe_mailto,
            )
        except (ValueError, TypeError) as exc:
            raise PermanentFailure(f"cannot build the email: {exc}") from None
        async with self._lock:
            await self._send(mail, recipients, message.kind == "message")

    async def _send(self, mail: EmailMessage, recipients: tuple[str, ...], customer: bool) -> None:
        if self._smtp is not None and time.monotonic() - self._last_used > IDLE_CLOSE:
            await self._drop()
        reused = self._smtp is not None
        for attempt in (1, 2):
            try:
                if self._smtp is None:
                    self._smtp = await self._connect()
                errors, _ = await self._smtp.send_message(
                    mail, sender=parseaddr(self.sender)[1], recipients=list(recipients)
                )
                self._last_used = time.monotonic()
                if errors and customer:
                    code, text = next(iter(errors.values()))
                    raise PermanentFailure(f"recipient refused: {code} {text}", bounced=True)
                return
            except aiosmtplib.SMTPServerDisconnected as exc:
                await self._drop()
                if attempt == 1 and reused:
                    continue  # a kept connection the server had closed: one fresh try
                raise TemporaryFailure(f"smtp disconnected: {exc}") from None
            except aiosmtplib.SMTPRecipientsRefused as exc:
                await self._drop()
                codes = [r.code for r in exc.recipients]
                detail = "; ".join(f"{r.code} {r.message}" for r in exc.recipients)
                if codes and all(code >= 500 for code in codes):
                    raise PermanentFailure(
                        f"recipient refused: {detail}", bounced=customer
                    ) from None
                raise TemporaryFailure(f"recipient deferred: {detail}") from None
            except aiosmtplib.SMTPResponseException as exc:
                await self._drop()
                if exc.code >= 500 and not isinstance(exc, aiosmtplib.SMTPAuthenticationError):
                    raise PermanentFailure(f"smtp {exc.code}: {exc.message}") from None
                raise TemporaryFailure(f"smtp {exc.code}: {exc.message}") from None
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                await self._drop()
                raise TemporaryFailure(f"smtp: {type(exc).__name__}: {exc}") from None
        raise TemporaryFailure("smtp: connection lost")  # pragma: no cover

    async def close(self) -> None:
        async with self._lock:
            await self._drop()


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
