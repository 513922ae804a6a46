"""Defined-risk candidates built from a day's chain with Greeks, and how they are scored.

Strategies: bull put and bear call credit spreads, bull call and bear put debit spreads, and
iron condors (a bull put and a bear call credit spread of equal width on one expiry).

Every figure is per one spread (100 multiplier) unless it says "per share":

* ``entry_price`` (per share): the expected fill, ``mid - f * (mid - natural)`` toward the
  touch for credits and ``mid + f * (natural - mid)`` for debits, with ``f`` the paper broker's
  fill fraction (0 = mid, 1 = touch). Credits are received, debits paid.
* ``max_profit``, ``max_loss``: dollars at expiration; ``breakeven_low``/``breakeven_high``.
* ``pop``: probability of profit at expiration; ``expected_value``: expected P&L at expiration
  in dollars, less opening commissions. Both under one lognormal terminal distribution per
  expiry: the risk-neutral forward and the expiry's at-the-money implied volatility (no skew).
  A positive EV therefore means the spread is priced rich against the at-the-money volatility,
  which is the premium a defined-risk seller harvests from the skew.
* ``return_on_risk`` = max_profit / max_loss.
* ``liquidity`` in [0, 1] = clip(1 - widest leg bid/ask as a fraction of its mid / 0.5, 0, 1)
  * clip(log10(1 + smallest leg open interest) / 3, 0, 1).
* ``score`` in [0, 100] = 100 * (0.40 * edge + 0.25 * pop + 0.15 * min(return_on_risk, 1)
  + 0.20 * liquidity), with edge = clip(0.5 + 2 * expected_value / max_loss, 0, 1).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import ndtr

from .chain import as_text, iso_dates

STRATEGIES = ("bull_put_credit", "bear_call_credit", "bull_call_debit", "bear_put_debit", "iron_condor")


@dataclass(frozen=True)
class StrategyConfig:
    min_dte: int = 14
    max_dte: int = 60
    credit_short_delta: tuple[float, float] = (0.10, 0.40)
    debit_long_delta: tuple[float, float] = (0.35, 0.65)
    condor_short_delta: tuple[float, float] = (0.10, 0.30)
    condor_delta_balance: float = 0.10
    max_strike_steps: int = 4
    max_width_pct: float = 0.10
    min_open_interest: int = 1
    fill_fraction: float = 0.5
    commission_per_contract: float = 0.65
    condor_per_side: int = 6


CANDIDATE_COLUMNS = [
    "candidate_id", "strategy", "direction", "underlying", "expiration", "dte", "underlying_price",
    "short_put", "long_put", "short_call", "long_call", "width", "mid_price", "natural_price",
    "entry_price", "max_profit", "max_loss", "breakeven_low", "breakeven_high", "pop",
    "expected_value", "return_on_risk", "short_delta", "atm_iv", "widest_spread_pct",
    "min_open_interest", "min_volume", "liquidity", "score", "settlement", "legs",
]


def _exp_call(F, K, sig, T):
    """Undiscounted E[(S_T - K)+] under a lognormal with mean F."""
    st = sig * np.sqrt(T)
    d1 = (np.log(F / K) + 0.5 * st * st) / st
    return F * ndtr(d1) - K * ndtr(d1 - st)


def _exp_put(F, K, sig, T):
    st = sig * np.sqrt(T)
    d1 = (np.log(F / K) + 0.5 * st * st) / st
    return K * ndtr(-(d1 - st)) - F * ndtr(-d1)


def _prob_above(F, x, sig, T):
    st = sig * np.sqrt(T)
    with np.errstate(divide="ignore", invalid="ignore"):
        d2 = (np.log(F / np.maximum(x, 1e-12)) - 0.5 * st * st) / st
    return np.where(x <= 0, 1.0, ndtr(d2))


def _legs_table(greeks: pd.DataFrame, cfg: StrategyConfig) -> pd.DataFrame:
    g = greeks[(greeks["iv_status"] == "ok") & (greeks["bid"] > 0)
               & greeks["dte"].between(cfg.min_dte, cfg.max_dte)
               & (greeks["open_interest"] >= cfg.min_open_interest)].copy()
    if g.empty:
        return g
    g["fwd"] = g["underlying_price"] * np.exp((g["rate"] - g["carry_yield"]) * g["t_years"])
    # at-the-money IV per expiry: mean IV of the strike nearest the forward
    g["_dist"] = (g["strike"] - g["fwd"]).abs()
    nearest = g.loc[g.groupby(["underlying", "expiration"])["_dist"].transform("min") == g["_dist"]]
    atm = nearest.groupby(["underlying", "expiration"])["iv"].mean().rename("atm_iv")
    g = g.join(atm, on=["underlying", "expiration"]).drop(columns="_dist")
    g = g.sort_values(["underlying", "expiration", "option_type", "strike"])
    g["rank"] = g.groupby(["underlying", "expiration", "option_type"]).cumcount()
    g["rel_spread"] = (g["ask"] - g["bid"]) / g["mid"]
    return g


_LEG_COLS = ["strike", "bid", "ask", "mid", "delta", "open_interest", "volume", "rel_spread", "option_symbol"]
_KEYS = ["underlying", "expiration", "option_type"]
_SHARED = ["dte", "t_years", "underlying_price", "fwd", "atm_iv", "settlement"]


def _pairs(legs: pd.DataFrame, cfg: StrategyConfig) -> pd.DataFrame:
    a = legs[_KEYS + ["rank"] + _SHARED + _LEG_COLS]
    b = legs[_KEYS + ["rank"] + _LEG_COLS]
    frames = []
    for k in range(1, cfg.max_strike_steps + 1):
        m = a.merge(b.assign(rank=b["rank"] - k), on=_KEYS + ["rank"], suffixes=("_a", "_b"))
        frames.append(m)
    p = pd.concat(frames, ignore_index=True)
    p["width"] = p["strike_b"] - p["strike_a"]
    return p[(p["width"] > 0) & (p["width"] <= cfg.max_width_pct * p["underlying_price"])]


def _verticals(p: pd.DataFrame, cfg: StrategyConfig) -> list[pd.DataFrame]:
    f = cfg.fill_fraction
    out = []
    F, sig, T = p["fwd"].to_numpy(), p["atm_iv"].to_numpy(), p["t_years"].to_numpy()
    Ka, Kb = p["strike_a"].to_numpy(), p["strike_b"].to_numpy()
    puts = (p["option_type"] == "P").to_numpy()
    calls = ~puts
    ev_call_a, ev_call_b = _exp_call(F, Ka, sig, T), _exp_call(F, Kb, sig, T)
    ev_put_a, ev_put_b = _exp_put(F, Ka, sig, T), _exp_put(F, Kb, sig, T)
    specs = [
        # name, mask, short is b?, credit?, expected payoff per share of the long-minus-short legs
        ("bull_put_credit", puts, "b", True, ev_put_a - ev_put_b),
        ("bear_put_debit", puts, "a", False, ev_put_b - ev_put_a),
        ("bear_call_credit", calls, "a", True, ev_call_b - ev_call_a),
        ("bull_call_debit", calls, "b", False, ev_call_a - ev_call_b),
    ]
    for name, mask, short, credit, exp_payoff in specs:
        s, lng = ("b", "a") if short == "b" else ("a", "b")
        q = p[mask].copy()
        q["exp_payoff"] = exp_payoff[mask]
        mid = q[f"mid_{s}"] - q[f"mid_{lng}"] if credit else q[f"mid_{lng}"] - q[f"mid_{s}"]
        natural = q[f"bid_{s}"] - q[f"ask_{lng}"] if credit else q[f"ask_{lng}"] - q[f"bid_{s}"]
        q["mid_price"] = mid
        q["natural_price"] = natural
        modelled = (mid - f * (mid - natural)) if credit else (mid + f * (natural - mid))
        # the limit is the modelled fill rounded to the cent toward the touch, so it is marketable
        q["entry_price"] = (np.floor(modelled * 100 + 1e-6) if credit else np.ceil(modelled * 100 - 1e-6)) / 100
        if credit:
            dl = q[f"delta_{s}"].abs()
            lo, hi = cfg.credit_short_delta
        else:
            dl = q[f"delta_{lng}"].abs()
            lo, hi = cfg.debit_long_delta
        q = q[dl.between(lo, hi) & (q["entry_price"] > 0) & (q["entry_price"] < q["width"])]
        if q.empty:
            continue
        price = q["entry_price"]
        q["direction"] = "credit" if credit else "debit"
        q["strategy"] = name
        q["max_profit"] = 100 * (price if credit else q["width"] - price)
        q["max_loss"] = 100 * (q["width"] - price if credit else price)
        short_k, long_k = q[f"strike_{s}"], q[f"strike_{lng}"]
        bullish = name in ("bull_put_credit", "bull_call_debit")
        if name == "bull_put_credit":
            be = short_k - price
        elif name == "bear_call_credit":
            be = short_k + price
        elif name == "bull_call_debit":
            be = long_k + price
        else:
            be = long_k - price
        p_above = _prob_above(q["fwd"].to_numpy(), be.to_numpy(), q["atm_iv"].to_numpy(), q["t_years"].to_numpy())
        q["pop"] = p_above if bullish else 1.0 - p_above
        q["breakeven_low"] = np.where(bullish, be, np.nan)
        q["breakeven_high"] = np.where(bullish, np.nan, be)
        cash = price if credit else -price
        q["expected_value"] = 100 * (q["exp_payoff"] + cash) - 2 * cfg.commission_per_contract
        q["short_delta"] = q[f"delta_{s}"]
        q["long_put"] = long_k if name in ("bull_put_credit", "bear_put_debit") else np.nan
        q["short_put"] = short_k if name in ("bull_put_credit", "bear_put_debit") else np.nan
        q["short_call"] = short_k if name in ("bear_call_credit", "bull_call_debit") else np.nan
        q["long_call"] = long_k if name in ("bear_call_credit", "bull_call_debit") else np.nan
        q["widest_spread_pct"] = np.maximum(q["rel_spread_a"], q["rel_spread_b"])
        q["min_open_interest"] = np.minimum(q["open_interest_a"], q["open_interest_b"])
        q["min_volume"] = np.minimum(q["volume_a"], q["volume_b"])
        q["short_symbol"] = q[f"option_symbol_{s}"]
        q["long_symbol"] = q[f"option_symbol_{lng}"]
        out.append(q)
    return out


_LEG_KINDS = (("short_put", "P", -1), ("long_put", "P", 1), ("short_call", "C", -1), ("long_call", "C", 1))


def _legs_json(rows: pd.DataFrame) -> np.ndarray:
    """Each candidate's legs as the JSON the broker and the ledger read: what ``json.dumps(legs,
    sort_keys=True)`` gives for the list of ``{"expiration": "YYYY-MM-DD", "option_symbol",
    "option_type", "side": -1 short / 1 long, "strike": float}`` (short put, long put, short call,
    long call; absent legs left out), built column-wise (each distinct symbol and strike is
    encoded once)."""
    exp = iso_dates(rows["expiration"])
    out = np.full(len(rows), "", dtype=object)
    for kind, otype, side in _LEG_KINDS:
        k = rows[kind].to_numpy(dtype=float)
        present = ~np.isnan(k)
        if not present.any():
            continue
        text = ('{"expiration": "' + exp + '", "option_symbol": ' + as_text(rows[f"{kind}_symbol"], json.dumps)
                + f', "option_type": "{otype}", "side": {side}, "strike": '
                + as_text(rows[kind], lambda v: json.dumps(float(v))) + "}")
        out = np.where(present, np.where(out == "", text, out + ", " + text), out)
    return "[" + out + "]"


def _condors(credit: pd.DataFrame, cfg: StrategyConfig) -> pd.DataFrame:
    lo, hi = cfg.condor_short_delta
    sel = credit[credit["short_delta"].abs().between(lo, hi)]
    keys = ["underlying", "expiration", "width"]
    puts = sel[sel["strategy"] == "bull_put_credit"].sort_values("expected_value", ascending=False)
    calls = sel[sel["strategy"] == "bear_call_credit"].sort_values("expected_value", ascending=False)
    puts = puts.groupby(keys).head(cfg.condor_per_side)
    calls = calls.groupby(keys).head(cfg.condor_per_side)
    pc = ["short_put", "long_put", "entry_price", "mid_price", "natural_price", "exp_payoff", "short_delta",
          "widest_spread_pct", "min_open_interest", "min_volume", "short_put_symbol", "long_put_symbol"]
    cc = ["short_call", "long_call", "entry_price", "mid_price", "natural_price", "exp_payoff", "short_delta",
          "widest_spread_pct", "min_open_interest", "min_volume", "short_call_symbol", "long_call_symbol"]
    base = ["dte", "t_years", "underlying_price", "fwd", "atm_iv", "settlement"]
    m = puts[keys + base + pc].merge(calls[keys + cc], on=keys, suffixes=("_p", "_c"))
    m = m[(m["short_put"] < m["short_call"])
          & ((m["short_delta_p"] + m["short_delta_c"]).abs() <= cfg.condor_delta_balance)]
    if m.empty:
        return m
    credit_ = m["entry_price_p"] + m["entry_price_c"]
    m["strategy"] = "iron_condor"
    m["direction"] = "credit"
    m["entry_price"] = np.floor(credit_ * 100 + 1e-6) / 100
    m["mid_price"] = m["mid_price_p"] + m["mid_price_c"]
    m["natural_price"] = m["natural_price_p"] + m["natural_price_c"]
    m = m[m["entry_price"] < m["width"]]
    m["max_profit"] = 100 * m["entry_price"]
    m["max_loss"] = 100 * (m["width"] - m["entry_price"])
    m["breakeven_low"] = m["short_put"] - m["entry_price"]
    m["breakeven_high"] = m["short_call"] + m["entry_price"]
    F, sig, T = m["fwd"].to_numpy(), m["atm_iv"].to_numpy(), m["t_years"].to_numpy()
    m["pop"] = (_prob_above(F, m["breakeven_low"].to_numpy(), sig, T)
                - _prob_above(F, m["breakeven_high"].to_numpy(), sig, T))
    m["expected_value"] = 100 * (m["exp_payoff_p"] + m["exp_payoff_c"] + m["entry_price"]) - 4 * cfg.commission_per_contract
    m["short_delta"] = np.where(m["short_delta_p"].abs() >= m["short_delta_c"].abs(), m["short_delta_p"], m["short_delta_c"])
    m["widest_spread_pct"] = np.maximum(m["widest_spread_pct_p"], m["widest_spread_pct_c"])
    m["min_open_interest"] = np.minimum(m["min_open_interest_p"], m["min_open_interest_c"])
    m["min_volume"] = np.minimum(m["min_volume_p"], m["min_volume_c"])
    return m


def _finish(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    df["return_on_risk"] = df["max_profit"] / df["max_loss"]
    df["liquidity"] = (np.clip(1 - df["widest_spread_pct"] / 0.5, 0, 1)
                       * np.clip(np.log10(1 + df["min_open_interest"]) / 3, 0, 1))
    edge = np.clip(0.5 + 2 * df["expected_value"] / df["max_loss"], 0, 1)
    df["score"] = 100 * (0.40 * edge + 0.25 * df["pop"] + 0.15 * np.minimum(df["return_on_risk"], 1.0)
                         + 0.20 * df["liquidity"])
    strikes = [as_text(df[c].round(4)) for c in ("long_put", "short_put", "short_call", "long_call")]
    df["candidate_id"] = (df["underlying"].to_numpy(dtype=object) + "|" + iso_dates(df["expiration"]) + "|"
                          + df["strategy"].to_numpy(dtype=object) + "|" + strikes[0] + "/" + strikes[1] + "/"
                          + strikes[2] + "/" + strikes[3])
    df["legs"] = _legs_json(df)
    return df


def build_candidates(greeks: pd.DataFrame, cfg: StrategyConfig | None = None) -> pd.DataFrame:
    """Every defined-risk candidate for the day, scored (see module docstring), best score first."""
    cfg = cfg or StrategyConfig()
    legs = _legs_table(greeks, cfg)
    if legs.empty:
        return pd.DataFrame(columns=CANDIDATE_COLUMNS)
    pairs = _pairs(legs, cfg)
    verts = _verticals(pairs, cfg)
    if not verts:
        return pd.DataFrame(columns=CANDIDATE_COLUMNS)
    v = pd.concat(verts, ignore_index=True)
    for side in ("put", "call"):
        for kind in ("short", "long"):
            col = f"{kind}_{side}_symbol"
            v[col] = np.where(v[f"{kind}_{side}"].notna(), v[f"{kind}_symbol"], None)
    credit = v[v["direction"] == "credit"]
    condors = _condors(credit, cfg)
    allc = pd.concat([v, condors], ignore_index=True) if len(condors) else v
    allc = _finish(allc)
    out = allc[CANDIDATE_COLUMNS].sort_values(["score", "candidate_id"], ascending=[False, True])
    return out.reset_index(drop=True)
