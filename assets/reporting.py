"""The daily report asset."""


import datetime as dt
from pathlib import Path

import dagster as dg
import pandas as pd
from dagster_pandera import pandera_schema_to_dagster_type

from optrader_pipelines import calendar as cal
from optrader_pipelines import reports
from optrader_pipelines.daily import close_book
from optrader_pipelines.validation import DailyReportSchema
from optrader_pipelines.notify import Message, NotifyError
from resources.broker import BrokerResource
from resources.notifier import NotifierResource
from resources.settings import TradingSettingsResource
from resources.warehouse import WarehouseResource

from .market_data import COMMON


@dg.asset(dagster_type=pandera_schema_to_dagster_type(DailyReportSchema), kinds={"pandas", "duckdb"}, **COMMON)
def daily_report(context: dg.AssetExecutionContext, safety_checked_orders: pd.DataFrame,
                 ranked_signals: pd.DataFrame, position_actions: pd.DataFrame, option_greeks: pd.DataFrame,
                 settings: TradingSettingsResource, notifier: NotifierResource,
                 broker: BrokerResource, warehouse: WarehouseResource) -> dg.Output[pd.DataFrame]:
    """The day's report, in Markdown and HTML files and in this asset's metadata: portfolio summary
    (net liquidation value, cash, positions, P&L, portfolio Greeks), the day's position-management
    decisions (closes and rolls with rule and reason), top signals with reasons, a cash-depletion
    analysis (what to close to fund a better signal when buying power runs short),
    orders placed and rejected with reasons, and the next-day plan. Its one-row table is the
    book's daily history (closing NLV, peak, drawdown) that the next day's risk checks read. The
    report is sent through the notifier (log by default, email or webhook when configured)."""
    day = dt.date.fromisoformat(context.partition_key)
    pb = broker.get()
    wh = warehouse.get()
    book, positions, summary = close_book(pb, wh, day, option_greeks)
    settled = wh.query("SELECT position_id, underlying, 'settled' AS status, realized_pnl, "
                       "exit_price * 100 * quantity AS settlement_value FROM positions "
                       "WHERE account = ? AND closed_date = ? AND close_reason LIKE 'expired%'", [pb.account, day])
    halted = next((r for r in safety_checked_orders["reason"] if str(r).startswith(("halted", "kill switch"))), None)
    plan = reports.next_day_plan(summary, positions, cal.next_trading_day(day), halted)
    data = reports.ReportData(
        trade_date=day, account=pb.account, market=settings.market_label, risk_profile=settings.risk_profile,
        risk_level=settings.risk_level, summary=summary, positions=positions, signals=ranked_signals,
        orders=safety_checked_orders, settlements=settled, next_day_plan=plan, actions=position_actions,
        cash_plan=reports.cash_depletion(safety_checked_orders, ranked_signals, positions, summary))
    md_path, html_path, markdown = reports.write(data, Path(settings.report_dir))
    accepted = int((safety_checked_orders["status"] == "accepted").sum())
    subject = (f"optrader {pb.account} {day.isoformat()}: NLV ${summary['nlv']:,.2f}, "
               f"{accepted} order(s) placed, {summary['open_positions']} open")
    try:
        notifier.get().send(Message(subject, markdown, html_path.read_text(encoding="utf-8")))
        delivery = f"sent via {notifier.kind}"
    except (NotifyError, ValueError) as exc:  # the report and the book stand; the failed delivery is recorded
        context.log.error(f"daily report not delivered: {exc}")
        delivery = f"NOT delivered via {notifier.kind}: {exc}"
    row = pd.DataFrame([{
        "account": pb.account, "nlv": summary["nlv"], "cash": summary["cash"],
        "positions_value": summary["positions_value"], "buying_power": summary["buying_power"],
        "daily_pnl": summary["daily_pnl"], "peak_nlv": summary["peak_nlv"], "drawdown": summary["drawdown"],
        "open_positions": summary["open_positions"], "realized_pnl": summary["realized_pnl"],
        "delta": summary["delta"], "gamma": summary["gamma"], "theta": summary["theta"], "vega": summary["vega"],
        "signals": len(ranked_signals), "orders_accepted": int((safety_checked_orders["status"] == "accepted").sum()),
        "orders_rejected": int((safety_checked_orders["status"] == "rejected").sum()),
        "report_path": str(md_path), "report_html_path": str(html_path),
    }])
    return dg.Output(row, metadata={
        "report": dg.MetadataValue.md(markdown),
        "report_path": dg.MetadataValue.path(str(md_path)),
        "report_html_path": dg.MetadataValue.path(str(html_path)),
        "nlv": summary["nlv"],
        "cash": summary["cash"],
        "open_positions": summary["open_positions"],
        "delivery": delivery,
    })
