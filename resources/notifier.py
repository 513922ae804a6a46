"""The notifier resource: alerts and the daily email (log-only by default)."""

import dagster as dg

from optrader_pipelines.notify import EmailNotifier, LogNotifier, Notifier, WebhookNotifier


class NotifierResource(dg.ConfigurableResource):
    """Where alerts and the daily report go: ``log`` (default), ``email`` (SMTP) or ``webhook``
    (Slack/Discord-compatible JSON). Secrets (SMTP password, webhook URL) come from environment
    variables through ``dg.EnvVar`` and are never shown in the UI or written to logs."""

    kind: str = "log"
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_from: str = "optrader@localhost"
    smtp_to: str = ""  # comma-separated
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_starttls: bool = False
    webhook_url: str = ""

    def get(self) -> Notifier:
        if self.kind == "log":
            return LogNotifier()
        if self.kind == "email":
            to = [a.strip() for a in self.smtp_to.split(",") if a.strip()]
            if not to:
                raise ValueError("notifier kind 'email' needs OPTRADER_SMTP_TO (comma-separated recipients)")
            return EmailNotifier(self.smtp_host, self.smtp_port, self.smtp_from, to, self.smtp_username or None,
                                 self.smtp_password or None, self.smtp_starttls)
        if self.kind == "webhook":
            if not self.webhook_url:
                raise ValueError("notifier kind 'webhook' needs OPTRADER_WEBHOOK_URL")
            return WebhookNotifier(self.webhook_url)
        raise ValueError(f"notifier kind {self.kind!r} is not one of log, email, webhook")
