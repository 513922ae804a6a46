"""Alerts and the emailed report: a notifier with email (SMTP), webhook (Slack/Discord JSON) and
log-only implementations.

* :class:`LogNotifier` (default) writes the message to the Python log.
* :class:`EmailNotifier` sends a multipart (text + HTML) message with ``smtplib``; STARTTLS and
  login are optional. Transient failures (connection refused or reset, SMTP 4xx) are retried with
  exponential backoff and jitter (tenacity).
* :class:`WebhookNotifier` POSTs ``{"text": ..., "content": ...}``: Slack reads ``text``, Discord
  ``content``. 5xx and 429 answers and connection errors are retried; 4xx is an error at once.

No credential is ever put in a message, an exception text or the log: errors name the host and
the recipient, never the password or the webhook's path (which is a secret for Slack and Discord).
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from email.message import EmailMessage
from urllib.parse import urlsplit

import httpx
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_random_exponential

log = logging.getLogger("optrader.notify")

SEVERITIES = ("info", "warning", "critical")


class NotifyError(RuntimeError):
    """A notification could not be delivered (after retries); the text holds no secret."""


@dataclass(frozen=True)
class Message:
    subject: str
    text: str
    html: str | None = None
    severity: str = "info"

    def __post_init__(self):
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity {self.severity!r} is not one of {', '.join(SEVERITIES)}")


class Notifier(ABC):
    kind = "abstract"

    @abstractmethod
    def send(self, message: Message) -> None: ...


class LogNotifier(Notifier):
    kind = "log"

    def __init__(self, logger: logging.Logger | None = None):
        self.logger = logger or log
        self.sent: list[Message] = []

    def send(self, message: Message) -> None:
        level = {"info": logging.INFO, "warning": logging.WARNING, "critical": logging.CRITICAL}[message.severity]
        self.logger.log(level, "%s\n%s", message.subject, message.text)
        self.sent.append(message)


def _transient_smtp(exc: BaseException) -> bool:
    if isinstance(exc, smtplib.SMTPResponseException):
        return 400 <= exc.smtp_code < 500
    return isinstance(exc, (ConnectionError, smtplib.SMTPServerDisconnected, TimeoutError))


@dataclass
class EmailNotifier(Notifier):
    host: str
    port: int
    sender: str
    recipients: list[str]
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    starttls: bool = False
    timeout_s: float = 10.0
    attempts: int = 4
    kind = "email"

    def __post_init__(self):
        if not self.recipients:
            raise ValueError("email notifier needs at least one recipient")

    def _build(self, message: Message) -> EmailMessage:
        msg = EmailMessage()
        prefix = "" if message.severity == "info" else f"[{message.severity.upper()}] "
        msg["Subject"] = prefix + message.subject
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.recipients)
        msg.set_content(message.text)
        if message.html:
            msg.add_alternative(message.html, subtype="html")
        return msg

    def _send_once(self, msg: EmailMessage) -> None:
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as smtp:
            if self.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if self.username:
                smtp.login(self.username, self.password or "")
            smtp.send_message(msg)

    def send(self, message: Message) -> None:
        msg = self._build(message)
        sender = retry(stop=stop_after_attempt(self.attempts), wait=wait_random_exponential(multiplier=0.2, max=5),
                       retry=retry_if_exception(_transient_smtp), reraise=True)(self._send_once)
        try:
            sender(msg)
        except (smtplib.SMTPException, OSError) as exc:
            # the exception text of an auth failure can echo the username; say only what failed
            raise NotifyError(f"email to {', '.join(self.recipients)} via {self.host}:{self.port} failed: "
                              f"{type(exc).__name__}") from None
        log.info("emailed %r to %s", message.subject, ", ".join(self.recipients))


class _Retryable(Exception):
    pass


@dataclass
class WebhookNotifier(Notifier):
    url: str = field(repr=False)
    timeout_s: float = 10.0
    attempts: int = 4
    transport: httpx.BaseTransport | None = field(default=None, repr=False)
    kind = "webhook"

    @property
    def where(self) -> str:
        """The webhook's scheme and host only: its path is the secret."""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}"

    def _post_once(self, payload: dict) -> None:
        with httpx.Client(timeout=self.timeout_s, transport=self.transport) as client:
            try:
                resp = client.post(self.url, json=payload)
            except httpx.TransportError as exc:
                raise _Retryable(type(exc).__name__) from None
        if resp.status_code == 429 or resp.status_code >= 500:
            raise _Retryable(f"HTTP {resp.status_code}")
        if resp.status_code >= 400:
            raise NotifyError(f"webhook at {self.where} refused the message: HTTP {resp.status_code}")

    def send(self, message: Message) -> None:
        prefix = "" if message.severity == "info" else f"[{message.severity.upper()}] "
        body = f"*{prefix}{message.subject}*\n{message.text}"
        payload = {"text": body, "content": body[:2000]}  # Discord caps content at 2,000 characters
        poster = retry(stop=stop_after_attempt(self.attempts), wait=wait_random_exponential(multiplier=0.2, max=5),
                       retry=retry_if_exception(lambda e: isinstance(e, _Retryable)), reraise=True)(self._post_once)
        try:
            poster(payload)
        except _Retryable as exc:
            raise NotifyError(f"webhook at {self.where} failed after {self.attempts} attempts: {exc}") from None
        log.info("posted %r to the webhook at %s", message.subject, self.where)
