"""The daily report: Markdown and HTML rendered with jinja2 from the day's book, signals and orders."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import jinja2
import pandas as pd

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("optrader_pipelines", "templates"),
    autoescape=jinja2.select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
_ENV.filters["money"] = lambda v: "n/a" if v is None or pd.isna(v) else f"${v:,.2f}"
_ENV.filters["pct"] = lambda v: "n/a" if v is None or pd.isna(v) else f"{v:.1%}"
_ENV.filters["num"] = lambda v, d=2: "n/a" if v is None or pd.isna(v) else f"{v:,.{d}f}"


@dataclass
class ReportData:
    trade_date: dt.date
    account: str
    market: str
    risk_profile: str
    risk_level: str
    summary: dict
    positions: pd.DataFrame
    signals: pd.DataFrame
    orders: pd.DataFrame
    settlements: pd.DataFrame
    next_day_plan: list[str]
    actions: pd.DataFrame | None = None  # position_actions: the management decisions of the day
    cash_plan: list[str] | None = None  # cash_depletion(): what to close to fund what


def _records(df: pd.DataFrame) -> list[dict]:
    return [] if df is None or df.empty else df.to_dict("records")


def render(data: ReportData) -> tuple[str, str]:
    """(markdown, html) for the day."""
    ctx = dict(
        d=data, summary=data.summary, positions=_records(data.positions), signals=_records(data.signals),
        placed=_records(data.orders[data.orders["status"] == "accepted"]) if len(data.orders) else [],
        rejected=_records(data.orders[data.orders["status"] != "accepted"]) if len(data.orders) else [],
        settlements=_records(data.settlements), plan=data.next_day_plan,
        actions=[a for a in _records(data.actions) if a["action"] != "hold"],
        cash_plan=data.cash_plan or [],
    )
    return _ENV.get_template("daily_report.md.j2").render(**ctx), _ENV.get_template("daily_report.html.j2").render(**ctx)


def write(data: ReportData, report_dir: Path) -> tuple[Path, Path, str]:
    md, html = render(data)
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    stem = f"daily_report_{data.account}_{data.trade_date.isoformat()}"
    md_path, html_path = report_dir / f"{stem}.md", report_dir / f"{stem}.html"
    for path, text in ((md_path, md), (html_path, html)):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)  # atomic: a reader never sees half a report
    return md_path, html_path, md


def next_day_plan(summary: dict, positions: pd.DataFrame, next_session: dt.date, halted: str | None) -> list[str]:
    plan = []
    if halted:
        plan.append(f"New entries stay halted: {halted}.")
    if len(positions):
        dte = (pd.to_datetime(positions["expiration"]) - pd.Timestamp(next_session)).dt.days
        expiring = positions[dte <= 0]
        for p in expiring.itertuples(index=False):
            plan.append(f"{p.underlying} {p.strategy} expires {pd.Timestamp(p.expiration).date()}: settles at the close.")
        soon = positions[(dte > 0) & (dte <= 21)]
        for p in soon.itertuples(index=False):
            plan.append(f"{p.underlying} {p.strategy} has {int((pd.Timestamp(p.expiration) - pd.Timestamp(next_session)).days)} days left: review for exit.")
    plan.append(f"Next run: {next_session.isoformat()} at 16:30 New York (daily_run_schedule).")
    if summary.get("buying_power", 0) < 0.1 * max(summary.get("nlv", 0), 1):
        plan.append("Buying power is below 10% of NLV: new entries will be small or rejected.")
    return plan


def cash_depletion(orders: pd.DataFrame, signals: pd.DataFrame, positions: pd.DataFrame, summary: dict) -> list[str]:
    """When signals were rejected for buying power: which open positions to close to fund them.

    Open positions are ranked by what they can still earn per dollar of buying power they hold
    (remaining profit = max profit - unrealized P&L, over collateral); the weakest are proposed,
    in order, until closing them (collateral released less the cost to close at the mark) covers
    the best unfunded signal's need, and only where that signal earns more per dollar."""
    if orders is None or orders.empty:
        return ["No signal today: nothing to fund."]
    short = orders[orders["reason"].astype(str).str.startswith("insufficient buying power")]
    if short.empty:
        return ["Buying power covered every accepted signal: nothing needs closing."]
    sig = signals.set_index("signal_id") if signals is not None and len(signals) else pd.DataFrame()
    lines = []
    avail = float(summary.get("buying_power", 0.0))
    pos = positions.copy() if positions is not None else pd.DataFrame()
    if not pos.empty:
        pos["remaining"] = pos["max_profit"] - pos["unrealized_pnl"]
        pos["freed"] = pos["collateral"] + pos["mark_value"]  # a short spread's mark is the cost to close
        pos["per_dollar"] = pos["remaining"] / pos["collateral"].where(pos["collateral"] > 0)
        pos = pos.sort_values("per_dollar", na_position="last")
    for o in short.itertuples(index=False):
        need = float(o.max_loss_per_spread) if pd.notna(o.max_loss_per_spread) else float("nan")
        ev = float(sig.loc[o.signal_id, "expected_value"]) if o.signal_id in sig.index else float("nan")
        target_yield = (sig.loc[o.signal_id, "max_profit"] / need) if o.signal_id in sig.index and need > 0 else 0.0
        head = (f"{o.underlying} {o.strategy} (rank {o.rank}, EV ${ev:,.2f}) needs ${need:,.2f} of buying power; "
                f"${avail:,.2f} is free.")
        if pos.empty:
            lines.append(head + " No open position to close: add cash or wait for expirations.")
            continue
        picks, freed = [], 0.0
        for p in pos.itertuples(index=False):
            if freed + avail >= need or not (pd.notna(p.per_dollar) and p.per_dollar < target_yield):
                break
            picks.append(p)
            freed += float(p.freed)
        if picks and freed + avail >= need:
            names = "; ".join(f"{p.underlying} {p.strategy} (can still earn ${p.remaining:,.2f} on "
                              f"${p.collateral:,.2f}, frees ${p.freed:,.2f})" for p in picks)
            lines.append(f"{head} Close {names} to fund it: the new trade earns more per dollar held.")
        else:
            lines.append(f"{head} No open position earns less per dollar held than it would, or closing them "
                         "would not free enough: keep the book.")
    return lines


def write_backtest_report(report_dir: Path, account: str, label: str, market: str, metrics: dict,
                          strategies: pd.DataFrame, png: bytes) -> tuple[Path, Path]:
    """The backtest's Markdown report beside its equity/drawdown PNG; returns (markdown, png) paths."""
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    stem = f"backtest_{account.split(':', 1)[-1]}"
    png_path, md_path = report_dir / f"{stem}.png", report_dir / f"{stem}.md"

    def fmt(k, v):
        if isinstance(v, float) and pd.isna(v):
            return "n/a"
        if k in ("total_return", "cagr", "max_drawdown", "win_rate", "var95", "cvar95"):
            return f"{v:.2%}"
        return f"{v:,.2f}" if isinstance(v, float) else str(v)

    text = _ENV.get_template("backtest_report.md.j2").render(
        label=label, account=account, days=metrics.get("days"), market=market, png_name=png_path.name,
        metrics=[(k, fmt(k, v)) for k, v in metrics.items()], strategies=_records(strategies))
    for path, data in ((png_path, png), (md_path, text.encode("utf-8"))):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    return md_path, png_path
