"""Trading assets: scored candidates, ranked signals, and safety-checked orders sent to the broker."""


import datetime as dt

import dagster as dg
import pandas as pd
from dagster_pandera import pandera_schema_to_dagster_type

from optrader_pipelines import audit
from optrader_pipelines.broker import DEPOSIT_DATE
from optrader_pipelines.daily import (
    book_history,
    close_book,
    manage_positions,
    place_accepted,
    roll_signals,
    underlying_prices,
)
from optrader_pipelines.killswitch import KillSwitch
from optrader_pipelines.momentum import closed_trades, strategy_momentum
from optrader_pipelines.risk import check_signals, max_risk_per_contract
from optrader_pipelines.signals import RankingConfig, rank_signals
from optrader_pipelines.strategies import StrategyConfig, build_candidates
from optrader_pipelines.validation import (
    PositionActionsSchema,
    RankedSignalsSchema,
    SafetyCheckedOrdersSchema,
    ScoredOpportunitiesSchema,
)
from resources.broker import BrokerResource
from resources.settings import TradingSettingsResource
from resources.warehouse import WarehouseResource

from ._meta import md_table
from .market_data import COMMON


@dg.asset(dagster_type=pandera_schema_to_dagster_type(ScoredOpportunitiesSchema), kinds={"pandas", "duckdb"}, **COMMON)
def scored_opportunities(option_greeks: pd.DataFrame, broker: BrokerResource) -> dg.Output[pd.DataFrame]:
    """Every defined-risk candidate the day's chain offers (bull put and bear call credit spreads,
    bull call and bear put debit spreads, iron condors, 14-60 days out) with its net price at the
    paper fill model, width, max profit and loss, breakevens, probability of profit, expected
    value, return on risk, liquidity and score (formulas in optrader_pipelines/strategies.py)."""
    cfg = StrategyConfig(fill_fraction=broker.fill_fraction, commission_per_contract=broker.commission_per_contract)
    cands = build_candidates(option_greeks, cfg)
    by_strategy = cands.groupby("strategy").agg(
        candidates=("score", "size"), median_pop=("pop", "median"), median_ev=("expected_value", "median"),
        best_score=("score", "max")).reset_index()
    show = ["underlying", "strategy", "expiration", "entry_price", "max_loss", "pop", "expected_value", "score"]
    return dg.Output(cands, metadata={
        "dagster/row_count": len(cands),
        "by_strategy": md_table(by_strategy, 10),
        "top_candidates": md_table(cands[show], 10),
    })


@dg.asset(dagster_type=pandera_schema_to_dagster_type(RankedSignalsSchema), kinds={"pandas", "duckdb"}, **COMMON)
def ranked_signals(context: dg.AssetExecutionContext, scored_opportunities: pd.DataFrame,
                   settings: TradingSettingsResource, broker: BrokerResource,
                   warehouse: WarehouseResource) -> dg.Output[pd.DataFrame]:
    """The day's top-N trade signals (default 4): eligible candidates (positive expected value,
    liquid enough, affordable under the risk profile, outside the management rules' time exit, of a
    strategy whose 3-month momentum is positive or not yet measured), the best per underlying,
    ranked by 50% confidence and 50% strategy momentum, each with a confidence and the reasons
    behind it. Exclusions are counted by reason."""
    day = dt.date.fromisoformat(context.partition_key)
    hist = book_history(warehouse.get(), broker.account, day)
    nlv = float(hist["nlv"].iloc[-1]) if len(hist) else broker.get().cash(DEPOSIT_DATE)
    cap = max_risk_per_contract(settings.profile(), settings.risk_level, nlv)
    mom = strategy_momentum(closed_trades(warehouse.get(), broker.account), day)
    signals, excluded = rank_signals(scored_opportunities, day, RankingConfig(
        top_n=settings.top_n, max_risk_per_contract=cap, time_exit_dte=settings.rulebook().time_exits(),
        momentum=tuple((r.strategy, float(r.momentum)) for r in mom.itertuples() if pd.notna(r.momentum))))
    show = ["rank", "underlying", "strategy", "expiration", "entry_price", "pop", "expected_value", "confidence"]
    return dg.Output(signals, metadata={
        "dagster/row_count": len(signals),
        "signals": md_table(signals[show], 20),
        "reasons": dg.MetadataValue.md("\n".join(f"{r.rank}. **{r.underlying} {r.strategy}**: {r.reasons}"
                                                 for r in signals.itertuples()) or "_(none)_"),
        "excluded": md_table(excluded, 20),
        "max_risk_per_contract": cap,
        "strategy_momentum": md_table(mom, 10),
    })


@dg.asset(dagster_type=pandera_schema_to_dagster_type(PositionActionsSchema), kinds={"pandas", "duckdb"}, **COMMON)
def position_actions(context: dg.AssetExecutionContext, option_greeks: pd.DataFrame,
                     scored_opportunities: pd.DataFrame, settings: TradingSettingsResource,
                     broker: BrokerResource) -> dg.Output[pd.DataFrame]:
    """What the desk did with each position it held at the start of the day, at the close and
    before any new trade: expirations settled, then the management rules (stop loss, profit
    target, tested short strike -> roll for a net credit or close, days-to-expiration exit; see
    optrader_pipelines/management.py) with the rule, the measured value, the threshold and the
    reason. Closing orders carry a key from (account, day, position, rule): re-materializing the
    day never closes twice. The opening half of a roll goes to the safety checks as a signal."""
    day = dt.date.fromisoformat(context.partition_key)
    pb = broker.get()
    synced = {}
    if hasattr(pb, "sync_account"):  # a real broker: book the fills of routed orders, then sync balances
        polled = pb.poll_orders(day, context.run_id)
        synced = pb.sync_account(day) | {"orders_polled": len(polled)}
    settled = pb.settle_expirations(day, underlying_prices(option_greeks), context.run_id)
    actions = manage_positions(pb, day, option_greeks, scored_opportunities, settings.rulebook(), context.run_id)
    counts = actions["action"].value_counts().to_dict()
    show = ["position_id", "underlying", "strategy", "action", "rule", "order_status", "fill_price", "reason"]
    return dg.Output(actions, metadata={
        "dagster/row_count": len(actions),
        "settled_at_expiration": len(settled),
        "closed": int(counts.get("close", 0)), "rolled": int(counts.get("roll", 0)), "held": int(counts.get("hold", 0)),
        "already_placed": int(actions["already_placed"].sum()) if len(actions) else 0,
        **{f"broker_{k}": v for k, v in synced.items()},
        "actions": md_table(actions[show], 30),
    })


@dg.asset(dagster_type=pandera_schema_to_dagster_type(SafetyCheckedOrdersSchema), kinds={"pandas", "duckdb"}, **COMMON)
def safety_checked_orders(context: dg.AssetExecutionContext, ranked_signals: pd.DataFrame,
                          position_actions: pd.DataFrame, scored_opportunities: pd.DataFrame,
                          option_greeks: pd.DataFrame, settings: TradingSettingsResource,
                          broker: BrokerResource, warehouse: WarehouseResource) -> dg.Output[pd.DataFrame]:
    """Each signal (the opening halves of the day's rolls first, then the ranked signals) sized and
    checked against the risk profile (defined risk only, position size, open-position limit, cash
    buffer, drawdown and daily-loss halts, leverage cap, the kill switch) on the book after the
    day's closes;
    accepted ones are sent to the broker with an idempotency key from (account, trade day,
    signal), so re-materializing a day never places an order twice. Rejections carry their reason."""
    day = dt.date.fromisoformat(context.partition_key)
    pb = broker.get()
    config_changed = audit.record_config(warehouse.get(), pb.account, {
        "market": settings.market_label, "broker": pb.name, "broker_mode": getattr(pb, "mode", "paper"),
        "risk_profile": settings.risk_profile, "risk_level": settings.risk_level, "top_n": settings.top_n,
        "management_rules": settings.management_rules or "default", "fill_fraction": broker.fill_fraction,
        "commission_per_contract": broker.commission_per_contract}, context.run_id)
    switch = KillSwitch(warehouse.get(), pb.account).state()
    book, _, summary = close_book(pb, warehouse.get(), day, option_greeks, before_orders=True,
                                  kill_switch=switch.engaged, kill_switch_reason=switch.describe())
    rolls = roll_signals(position_actions, scored_opportunities)
    signals = pd.concat([rolls, ranked_signals], ignore_index=True) if len(rolls) else ranked_signals
    decisions = check_signals(signals, book, settings.profile(), settings.risk_level, day,
                              broker.commission_per_contract)
    orders = place_accepted(decisions, pb, option_greeks, day, context.run_id)
    accepted = orders[orders["status"] == "accepted"]
    show = ["rank", "underlying", "strategy", "quantity", "limit_price", "status", "order_status", "reason"]
    return dg.Output(orders, metadata={
        "dagster/row_count": len(orders),
        "accepted": len(accepted),
        "rejected": int((orders["status"] == "rejected").sum()),
        "filled": int((orders["order_status"] == "filled").sum()),
        "already_placed": int(orders["already_placed"].sum()),
        "kill_switch": switch.describe(),
        "config_changed": config_changed,
        "rolls_opened": int(((orders["rank"] == 0) & (orders["order_status"] == "filled")).sum()),
        "nlv_before_orders": summary["nlv"],
        "orders": md_table(orders[show], 20),
    })
