"""Intraday sensors: the risk check every 5 minutes of regular NYSE hours, and run-failure alerts."""


import hashlib

import dagster as dg
import numpy as np
import pandas as pd

from optrader_pipelines import calendar as cal
from optrader_pipelines.adjust import intraday_decisions
from optrader_pipelines.daily import book_history
from optrader_pipelines.broker import DEPOSIT_DATE
from optrader_pipelines.intraday import RiskLimits, legs_table, risk_snapshot
from optrader_pipelines.killswitch import KillSwitch
from optrader_pipelines.notify import Message, NotifyError
from resources.broker import BrokerResource
from resources.market import MarketResource
from resources.notifier import NotifierResource
from resources.settings import TradingSettingsResource
from resources.warehouse import WarehouseResource

def _interval_minutes() -> int:
    import os

    raw = os.environ.get("OPTRADER_SENSOR_INTERVAL_MINUTES") or "5"
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"OPTRADER_SENSOR_INTERVAL_MINUTES={raw!r} must be a whole number of minutes >= 1")
    return value


RISK_INTERVAL_S = 60 * _interval_minutes()  # both intraday sensors; read when the definitions load
VAR_WINDOW = 250


def now_ny() -> pd.Timestamp:
    """The sensors' clock (tests replace it)."""
    return pd.Timestamp.now(tz=cal.NY)


def session_state(at: pd.Timestamp) -> str | None:
    """None during regular hours of an NYSE session, else the reason to skip."""
    day = at.date()
    if not cal.is_trading_day(day):
        return f"{day.isoformat()} ({day.strftime('%A')}) is not an NYSE trading day"
    open_, close = cal.session_open(day), cal.session_close(day)
    if at < open_ or at >= close:
        return (f"outside regular hours ({open_.strftime('%H:%M')}-{close.strftime('%H:%M')} New York"
                f"{', half day' if close.hour < 16 else ''}); now {at.strftime('%H:%M')}")
    return None


def take_snapshot(at: pd.Timestamp, market: MarketResource, broker: BrokerResource,
                  warehouse: WarehouseResource, settings: TradingSettingsResource) -> dict:
    """Marks the open book at ``at`` and records the snapshot (idempotent per minute)."""
    source = market.intraday()
    if source is None:
        raise ValueError(f"market {market.label} has no intraday marks")
    day = at.date()
    pb = broker.get()
    wh = warehouse.get()
    positions = pb.open_positions(day)
    legs = legs_table(positions)
    quotes = source.intraday_quotes(legs, at) if len(legs) else legs.assign(spot=[], mid=[], delta=[], gamma=[],
                                                                               vega=[], theta=[])
    hist = book_history(wh, pb.account, day)
    start = pb.cash(DEPOSIT_DATE)
    previous = float(hist["nlv"].iloc[-1]) if len(hist) else start
    peak = max([start] + ([float(hist["nlv"].max())] if len(hist) else []))
    prev_day = cal.previous_trading_day(day)
    unds = sorted(set(legs["underlying"])) if len(legs) else []
    closes = {u: source.closes(u, prev_day, VAR_WINDOW + 1) for u in unds}
    returns = pd.DataFrame({u: np.log(c).diff() for u, c in closes.items()}) if closes else None
    snap = risk_snapshot(positions, quotes, pb.cash(day), previous, peak,
                         {u: float(c.iloc[-1]) for u, c in closes.items()}, returns,
                         RiskLimits.for_profile(settings.profile()))
    taken = at.tz_convert("UTC").tz_localize(None).floor("min")
    sid = "rs-" + hashlib.sha256(f"{pb.account}|{taken.isoformat()}".encode()).hexdigest()[:20]
    cols = ["nlv", "cash", "positions_value", "open_positions", "pnl_since_close", "daily_return", "drawdown",
            "delta_usd", "gamma_usd", "vega_usd", "theta_usd", "buying_power_used", "var95_historical",
            "var95_parametric", "var_days"]
    wh.ensure_ledger()
    wh.execute_many([(f"INSERT INTO risk_snapshots VALUES ({', '.join(['?'] * (len(cols) + 5))}) ON CONFLICT DO NOTHING",
                      [sid, pb.account, taken, day, *[snap[c] for c in cols],
                       "; ".join(d for _, d in snap["breaches"])])])
    snap["snapshot_id"] = sid
    return snap


@dg.sensor(name="intraday_risk_sensor", minimum_interval_seconds=RISK_INTERVAL_S,
           default_status=dg.DefaultSensorStatus.RUNNING,
           description="Every N minutes (OPTRADER_SENSOR_INTERVAL_MINUTES, default 5) of regular NYSE hours: marks the open book, records a risk snapshot "
                       "(P&L, drawdown, Greeks, VaR, buying power) and, on a limit breach, engages the kill "
                       "switch and alerts.")
def intraday_risk_sensor(context: dg.SensorEvaluationContext, market: MarketResource,
                         broker: BrokerResource, warehouse: WarehouseResource,
                         notifier: NotifierResource, settings: TradingSettingsResource):
    at = now_ny()
    reason = session_state(at)
    if reason:
        return dg.SkipReason(reason)
    if market.intraday() is None:
        return dg.SkipReason(f"market {market.label} has no intraday marks: no intraday risk check")
    snap = take_snapshot(at, market, broker, warehouse, settings)
    summary = (f"NLV ${snap['nlv']:,.2f}, P&L since close ${snap['pnl_since_close']:,.2f}, "
               f"drawdown {snap['drawdown']:.1%}, delta ${snap['delta_usd']:,.0f}, vega ${snap['vega_usd']:,.0f}, "
               f"VaR95 ${snap['var95_historical']:,.2f} hist / ${snap['var95_parametric']:,.2f} param")
    if not snap["breaches"]:
        return dg.SkipReason(f"within limits: {summary}")
    text = "; ".join(d for _, d in snap["breaches"])
    ks = KillSwitch(warehouse.get(), broker.account)
    kinds = ",".join(k for k, _ in snap["breaches"])
    newly = ks.engage(text, actor="intraday_risk_sensor", run_id="",
                      key=f"{broker.account}|{at.date().isoformat()}|{kinds}")
    if newly:
        try:
            notifier.get().send(Message(f"optrader {broker.account}: kill switch engaged", f"{text}\n\n{summary}",
                                        severity="critical"))
        except NotifyError as exc:
            context.log.error(f"kill switch alert not delivered: {exc}")
    return dg.SkipReason(f"BREACH ({text}): kill switch {'engaged' if newly else 'already engaged'}; {summary}")


@dg.sensor(name="position_adjustment_sensor", minimum_interval_seconds=RISK_INTERVAL_S,
           job_name="position_adjustment_job", default_status=dg.DefaultSensorStatus.RUNNING,
           description="Every N minutes (default 5) of regular NYSE hours: the management rules on intraday marks; one "
                       "position_adjustment_job run per position to close or roll, keyed by (position, rule, day).")
def position_adjustment_sensor(context: dg.SensorEvaluationContext, market: MarketResource,
                               broker: BrokerResource, settings: TradingSettingsResource):
    at = now_ny()
    reason = session_state(at)
    if reason:
        return dg.SkipReason(reason)
    source = market.intraday()
    if source is None:
        return dg.SkipReason(f"market {market.label} has no intraday marks: no intraday adjustments")
    pb = broker.get()
    positions = pb.open_positions(at.date())
    positions = positions[pd.to_datetime(positions["opened_date"]).dt.date < at.date()]  # not today's entries
    if positions.empty:
        return dg.SkipReason("no open position")
    legs = legs_table(positions)
    decisions = intraday_decisions(positions, source.intraday_quotes(legs, at), at.date(), settings.rulebook())
    todo = decisions[decisions["action"].isin(["close", "roll"])]
    if todo.empty:
        return dg.SkipReason(f"{len(decisions)} position(s): no rule fired")
    day = at.date().isoformat()
    return [dg.RunRequest(
        run_key=f"{d.position_id}|{d.rule}|{day}",
        run_config={"ops": {"adjust_position_op": {"config": {
            "position_id": d.position_id, "rule": d.rule, "reason": d.reason, "at": at.isoformat()}}}},
        tags={"optrader/position": d.position_id, "optrader/rule": d.rule, "optrader/trade_date": day})
        for d in todo.itertuples(index=False)]


@dg.run_failure_sensor(name="run_failure_alert_sensor", default_status=dg.DefaultSensorStatus.RUNNING,
                       description="Alerts through the notifier when any run fails: run id, job, step and error.")
def run_failure_alert_sensor(context: dg.RunFailureSensorContext, notifier: NotifierResource):
    run = context.dagster_run
    steps = []
    for event in context.get_step_failure_events():
        err = event.event_specific_data.error if event.event_specific_data else None
        steps.append(f"step {event.step_key}: {err.message.strip() if err else 'no error recorded'}")
    failure = context.failure_event.message or "run failed"
    text = "\n".join([f"run {run.run_id} of job {run.job_name} failed"
                      + (f" (partition {run.tags.get('dagster/partition')})" if run.tags.get("dagster/partition") else ""),
                      failure, *steps])
    notifier.get().send(Message(f"optrader run failed: {run.job_name} {run.run_id[:8]}", text, severity="critical"))


__all__ = ["intraday_risk_sensor", "position_adjustment_sensor", "run_failure_alert_sensor", "session_state", "take_snapshot", "now_ny"]

