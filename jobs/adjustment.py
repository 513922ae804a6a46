"""``position_adjustment_job``: closes (or rolls) one position intraday, requested by the
position-adjustment sensor with a run key unique to (position, rule, trading day)."""

import dagster as dg
import pandas as pd

from optrader_pipelines import calendar as cal
from optrader_pipelines.adjust import adjust_position
from optrader_pipelines.notify import Message, NotifyError
from resources.broker import BrokerResource
from resources.market import MarketResource
from resources.notifier import NotifierResource
from resources.settings import TradingSettingsResource


class AdjustmentConfig(dg.Config):
    position_id: str
    rule: str
    reason: str
    at: str  # ISO timestamp of the marks the decision was made on (New York)


@dg.op
def adjust_position_op(context: dg.OpExecutionContext, config: AdjustmentConfig, market: MarketResource,
                       broker: BrokerResource, settings: TradingSettingsResource,
                       notifier: NotifierResource) -> dict:
    """Close the position at the intraday quotes; for a tested credit spread, also open the roll
    target through the safety checks (the kill switch included)."""
    source = market.intraday()
    if source is None:
        raise dg.Failure(f"market {market.label} has no intraday quotes: cannot adjust {config.position_id}")
    at = pd.Timestamp(config.at)
    at = at.tz_localize(cal.NY) if at.tzinfo is None else at.tz_convert(cal.NY)
    out = adjust_position(broker.get(), source, config.position_id, config.rule, config.reason, at,
                          settings.rulebook(), settings.profile(), settings.risk_level, context.run_id)
    context.log.info(f"{config.position_id} {config.rule}: closed={out['closed']} roll={out['roll_status']} "
                     f"({out['note']})")
    context.add_output_metadata({k: str(v) for k, v in out.items()})
    if out["closed"]:
        text = (f"{config.position_id}: {config.rule} at {at.strftime('%Y-%m-%d %H:%M')} New York: {config.reason}\n"
                f"closing order {out['close_order']}; roll: {out['roll_status']}"
                + (f" ({out['roll_order']})" if out["roll_order"] else "") + f"\n{out['note']}")
        try:
            notifier.get().send(Message(f"optrader {broker.account}: position {config.rule}", text, severity="warning"))
        except NotifyError as exc:
            context.log.error(f"adjustment alert not delivered: {exc}")
    return out


@dg.job(description="Close or roll one position intraday (requested by position_adjustment_sensor).",
        executor_def=dg.in_process_executor, tags={"optrader/kind": "adjustment", "optrader/book": "trading"})
def position_adjustment_job():
    adjust_position_op()
