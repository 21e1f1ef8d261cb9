"""The built-in ``smtp`` channel: campaign mails and operator alerts over SMTP (aiosmtplib).

Options (the :class:`SmtpOptions` model): host, port, tls (none | starttls |
implicit), from, username, password or password_env, timeout, rate (messages
per second, paced by the notifier), alerts_to (operators who get alerts). One
connection is kept open and reused for a batch; it is closed after ``idle``
seconds without a send and re-opened on demand::

    channel = SmtpChannelType().create("mail", config.channels["mail"].options)
    await channel.send(message)
    await channel.close()

A customer message becomes ``multipart/alternative`` (text and HTML parts) with
``List-Unsubscribe`` and ``List-Unsubscribe-Post`` (RFC 8058), a Message-ID
derived from the event id and a ``Promod-Event-Id`` header. 5xx answers are
permanent (a refused recipient is reported as bounced and suppressed), 4xx
answers and network errors temporary.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
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
    Duration,
    EnvName,
    Host,
    Model,
    NonEmpty,
    Port,
    PositiveNumber,
    Problems,
    Sender,
    choice,
)

__all__ = ["SMTP_TLS_MODES", "SmtpChannel", "SmtpChannelType", "SmtpOptions", "build_email"]

log = get_logger("promod.notify.smtp")

IDLE_CLOSE = 30.0  # seconds a kept connection may sit unused
SMTP_TLS_MODES = ("none", "starttls", "implicit")
_DEFAULT_PORTS = {"none": 25, "starttls": 587, "implicit": 465}


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


def _domain(sender: str) -> str:
    address = parseaddr(sender)[1]
    return address.rpartition("@")[2] or "promod.invalid"


def _alert_text(message: Message) -> str:
    lines = [f"promod alert: {message.type}", ""]
    for key, value in message.data.items():
        lines.append(f"{key}: {value}")
    return "\n".join(lines) + "\n"


def build_email(
    message: Message, sender: str, recipients: tuple[str, ...], channel: str
) -> EmailMessage:
    """The RFC 5322 message for ``message`` (customer message or alert)."""
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = ", ".join(recipients)
    mail["Date"] = formatdate(localtime=False, usegmt=True)
    mail["Message-ID"] = f"<{message.event_id}.{channel}@{_domain(sender)}>"
    mail["Promod-Event-Id"] = message.event_id
    if message.kind == "message":
        mail["Subject"] = message.subject or ""
        for name, value in message.headers.items():
            mail[name] = value
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
            mail = build_email(message, self.sender, recipients, self.name)
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
