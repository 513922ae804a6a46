"""The notifier against real servers on loopback: an SMTP server (aiosmtpd) and an HTTP server
that stands in for a Slack/Discord webhook; and the daily report delivered by email."""

import email
import json
import threading
from email import policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest

from optrader_pipelines.notify import EmailNotifier, Message, NotifyError, WebhookNotifier
from optrader_pipelines.reports import cash_depletion

aiosmtpd_controller = pytest.importorskip("aiosmtpd.controller")


class _Inbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(email.message_from_bytes(envelope.content, policy=policy.default))
        return "250 Message accepted for delivery"


@pytest.fixture()
def smtp_server():
    import socket

    with socket.socket() as s:  # a free port (the controller's start-up check cannot use port 0)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    inbox = _Inbox()
    controller = aiosmtpd_controller.Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, inbox
    finally:
        controller.stop()


def test_email_notifier_sends_text_and_html(smtp_server):
    port, inbox = smtp_server
    n = EmailNotifier("127.0.0.1", port, "desk@example.com", ["a@example.com", "b@example.com"])
    n.send(Message("kill switch engaged", "daily loss 12% >= 10%", "<p>daily loss <b>12%</b></p>", "critical"))
    assert len(inbox.messages) == 1
    m = inbox.messages[0]
    assert m["Subject"] == "[CRITICAL] kill switch engaged" and m["To"] == "a@example.com, b@example.com"
    assert "daily loss 12% >= 10%" in m.get_body(("plain",)).get_content()
    assert "<b>12%</b>" in m.get_body(("html",)).get_content()


def test_email_failure_is_a_clear_error_without_secrets():
    n = EmailNotifier("127.0.0.1", 9, "desk@example.com", ["a@example.com"], username="me", password="hunter2",
                      attempts=2)
    with pytest.raises(NotifyError) as err:
        n.send(Message("x", "y"))
    assert "127.0.0.1:9" in str(err.value) and "hunter2" not in str(err.value) and "hunter2" not in repr(n)


class _Hook(BaseHTTPRequestHandler):
    plan: list = []
    received: list = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        status = self.plan.pop(0) if self.plan else 200
        self.received.append((self.path, status, body))
        self.send_response(status)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


@pytest.fixture()
def webhook_server():
    _Hook.plan, _Hook.received = [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/services/T000/SECRETPATH", _Hook
    finally:
        server.shutdown()


def test_webhook_retries_5xx_and_posts_slack_and_discord_json(webhook_server):
    url, hook = webhook_server
    hook.plan = [503, 500]
    WebhookNotifier(url).send(Message("order rejected", "SPY bull_put_credit: insufficient buying power", severity="warning"))
    assert [s for _, s, _ in hook.received] == [503, 500, 200]
    path, _, body = hook.received[-1]
    assert path == "/services/T000/SECRETPATH"
    assert body["text"] == body["content"]
    assert body["text"].startswith("*[WARNING] order rejected*") and "insufficient buying power" in body["text"]


def test_webhook_4xx_fails_at_once_and_never_shows_the_secret_path(webhook_server):
    url, hook = webhook_server
    hook.plan = [403]
    with pytest.raises(NotifyError) as err:
        WebhookNotifier(url).send(Message("x", "y"))
    assert len(hook.received) == 1 and "HTTP 403" in str(err.value)
    assert "SECRETPATH" not in str(err.value) and "SECRETPATH" not in repr(WebhookNotifier(url))


def test_cash_depletion_proposes_closing_the_weakest_position_for_a_better_trade():
    orders = pd.DataFrame([{"signal_id": "s1", "rank": 1, "underlying": "SPY", "strategy": "bull_put_credit",
                            "max_loss_per_spread": 400.0,
                            "reason": "insufficient buying power: $150.00 available, one spread needs $401.30"}])
    signals = pd.DataFrame([{"signal_id": "s1", "expected_value": 25.0, "max_profit": 100.0}])  # 25% on risk
    positions = pd.DataFrame([
        {"underlying": "IWM", "strategy": "iron_condor", "max_profit": 80.0, "unrealized_pnl": 60.0,
         "collateral": 420.0, "mark_value": -30.0},  # can still earn $20 on $420: 4.8%
        {"underlying": "AMD", "strategy": "bear_call_credit", "max_profit": 150.0, "unrealized_pnl": 0.0,
         "collateral": 350.0, "mark_value": -150.0},  # $150 on $350: 43%, better than the new trade
    ])
    lines = cash_depletion(orders, signals, positions, {"buying_power": 150.0})
    assert len(lines) == 1
    assert "Close IWM iron_condor" in lines[0] and "AMD" not in lines[0] and "frees $390.00" in lines[0]
    ok = cash_depletion(orders.assign(reason="accepted"), signals, positions, {"buying_power": 150.0})
    assert ok == ["Buying power covered every accepted signal: nothing needs closing."]


def test_daily_report_is_emailed(tmp_path, smtp_server):
    import dagster as dg

    from assets import DAILY_ASSETS, DAILY_CHECKS
    from optrader_pipelines.config import Settings
    from optrader_pipelines.definitions import build_resources
    from resources.market import SyntheticMarketResource

    from .conftest import SMALL_UNIVERSE
    from .test_daily_run import D1

    port, inbox = smtp_server
    res = build_resources(Settings(duckdb_path=tmp_path / "w.duckdb", report_dir=tmp_path / "reports",
                                   universe=tuple(SMALL_UNIVERSE), notifier="email", smtp_port=port,
                                   smtp_to="trader@example.com"))
    res["market"] = SyntheticMarketResource(seed=7, universe=list(SMALL_UNIVERSE), strikes_per_side=12)
    result = dg.materialize([*DAILY_ASSETS, *DAILY_CHECKS], partition_key=D1.isoformat(), resources=res,
                            instance=dg.DagsterInstance.ephemeral())
    assert result.success
    assert len(inbox.messages) == 1
    m = inbox.messages[0]
    assert m["Subject"].startswith(f"optrader paper {D1.isoformat()}: NLV $") and m["To"] == "trader@example.com"
    text = m.get_body(("plain",)).get_content()
    for section in ("## Portfolio", "## Position management", "## Top signals", "## Orders placed",
                    "## Orders rejected", "## Cash", "## Next-day plan"):
        assert section in text
    orders = result.output_for_node("safety_checked_orders")
    for o in orders[orders["order_status"] == "filled"].itertuples():
        assert o.order_id in text  # every order placed is in the mail
    assert m.get_body(("html",)).get_content().startswith("<!doctype html>")
    report = result.asset_materializations_for_node("daily_report")[0]
    assert report.metadata["delivery"].value == "sent via email"
