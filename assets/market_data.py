"""Market-data assets: the day's option chains and their JAX-computed Greeks."""


import datetime as dt

import dagster as dg
import pandas as pd
from dagster_pandera import pandera_schema_to_dagster_type

from optrader_pipelines.daily import require_closed
from optrader_pipelines.pricing import greeks_table, prepare_greeks_table
from optrader_pipelines.validation import OptionChainsSchema, OptionGreeksSchema, run_gx_suite
from resources.market import MarketResource

from ._meta import md_table, table_schema
from .partitions import trading_day_partitions

COMMON = dict(partitions_def=trading_day_partitions, io_manager_key="warehouse_io_manager", group_name="daily_run")


@dg.asset(dagster_type=pandera_schema_to_dagster_type(OptionChainsSchema), kinds={"pandas", "duckdb"}, **COMMON)
def option_chains(context: dg.AssetExecutionContext, market: MarketResource) -> dg.Output[pd.DataFrame]:
    """End-of-day option chains for the trading day's universe, one row per contract, from the
    configured market (synthetic by default, or vendor files). Every later stage prices, scores
    and trades from these quotes. Rows that cannot be priced (crossed, zero, non-finite quotes)
    are dropped with a count per reason in the metadata; the schema is a hard gate."""
    day = require_closed(dt.date.fromisoformat(context.partition_key))
    load = market.load_chain(day)
    chain = load.chain
    # the kernels option_greeks runs load in background threads while this chain is checked and
    # written (the daily job runs in one process); nothing waits for them here
    try:
        prepare_greeks_table(chain)
    except Exception as exc:  # only a head start: a chain this cannot read meets the schema gate next
        context.log.warning(f"pricing kernels not loaded ahead of option_greeks: {exc}")
    drops = load.drops.frame()
    per_underlying = chain.groupby("underlying").agg(
        contracts=("strike", "size"), expirations=("expiration", "nunique"), spot=("underlying_price", "first")
    ).reset_index()
    return dg.Output(chain, metadata={
        "dagster/row_count": len(chain),
        "dagster/column_schema": table_schema(chain),
        "underlyings": len(per_underlying),
        "market": market.label,
        "sources": dg.MetadataValue.md("\n".join(f"- `{s}`" for s in load.sources)),
        "rows_dropped": load.drops.total,
        "drops_by_reason": md_table(drops, 50),
        "per_underlying": md_table(per_underlying, 50),
    })


@dg.asset(dagster_type=pandera_schema_to_dagster_type(OptionGreeksSchema), kinds={"jax", "duckdb"}, **COMMON)
def option_greeks(context: dg.AssetExecutionContext, option_chains: pd.DataFrame) -> dg.Output[pd.DataFrame]:
    """Implied volatility, delta, gamma, theta (per calendar day), vega (per vol point) and rho
    (per rate point) for every contract: Black-Scholes-Merton with the row's rate and dividend
    yield (or the vendor forward), solved from the mid in JAX (float64, jit, one vectorized call
    over the whole chain). Contracts with no IV keep NaN and a status saying why."""
    greeks = greeks_table(option_chains)
    status = greeks["iv_status"].value_counts().rename_axis("iv_status").reset_index(name="contracts")
    ok = greeks[greeks["iv_status"] == "ok"]
    return dg.Output(greeks, metadata={
        "dagster/row_count": len(greeks),
        "iv_solved": len(ok),
        "iv_status": md_table(status, 20),
        "median_iv": float(ok["iv"].median()) if len(ok) else float("nan"),
    })


def _gx_result(df: pd.DataFrame, suite: str) -> dg.AssetCheckResult:
    success, results = run_gx_suite(df, suite)
    failed = results[~results["success"]]
    return dg.AssetCheckResult(
        passed=success,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "expectations": len(results),
            "failed": len(failed),
            "results": md_table(results, 50),
        },
    )


@dg.asset_check(asset=option_chains, blocking=True, partitions_def=trading_day_partitions,
                description="great-expectations suite: bid <= ask, no negative prices, strike > 0, "
                            "expiration after the quote date, known option types, unique contracts.")
def option_chains_expectations(option_chains: pd.DataFrame) -> dg.AssetCheckResult:
    return _gx_result(option_chains, "option_chains")


@dg.asset_check(asset=option_greeks, blocking=True, partitions_def=trading_day_partitions,
                description="great-expectations suite: the chain rules plus IV within bounds, call delta "
                            "in [0, 1], put delta in [-1, 0], gamma and vega non-negative, IV solved for most contracts.")
def option_greeks_expectations(option_greeks: pd.DataFrame) -> dg.AssetCheckResult:
    return _gx_result(option_greeks, "option_greeks")
