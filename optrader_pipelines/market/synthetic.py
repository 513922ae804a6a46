"""A deterministic synthetic option market: same seed and date, same chain, no network.

Underlyings follow a log-price process around a drifting trend (mean-reverting deviation) with
a market-wide two-state volatility regime (calm/stressed Markov chain), market and idiosyncratic
Gaussian shocks, and Poisson jumps. Paths are generated in fixed chunks of trading days from
per-(seed, symbol, chunk) random streams, so extending the calendar never changes a past day.

Implied volatility surface per day: ATM level from the regime plus a variance premium, a term
structure that is upward sloping when calm and inverted when stressed, and a smile with
negative skew and curvature in standardized moneyness. Quotes are model prices: BSM for indexes
(European, cash settled), the engine's American model for equities and ETFs (American, physically
settled, so never below intrinsic), with bid/ask spreads that widen away from the money and at low prices, ticks of
0.01 (penny names) or 0.05, and volume/open interest that peak at the money.
"""

from __future__ import annotations

import datetime as dt
import zlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from .. import calendar as cal
from ..chain import DropLog, conform
from ..pricing import american_price, bsm_price_numpy
from ..pricing.european import bsm_greeks_numpy
from . import ChainLoad, MarketSource


@dataclass(frozen=True)
class Underlying:
    symbol: str
    price_2026: float  # trend level on 2026-01-02
    vol: float  # base annual volatility (calm regime)
    beta: float
    dividend_yield: float
    index: bool = False  # European, cash-settled
    penny: bool = False  # 0.01 ticks
    weeklies: bool = True
    liquidity: float = 1.0
    roots: tuple[str, ...] = ()


DEFAULT_UNIVERSE: tuple[Underlying, ...] = (
    Underlying("SPX", 5900.0, 0.15, 1.0, 0.013, index=True, liquidity=3.0, roots=("SPXW",)),
    Underlying("NDX", 21000.0, 0.19, 1.2, 0.007, index=True, liquidity=1.0, roots=("NDXP",)),
    Underlying("RUT", 2250.0, 0.21, 1.2, 0.012, index=True, liquidity=1.0, roots=("RUTW",)),
    Underlying("SPY", 590.0, 0.15, 1.0, 0.013, penny=True, liquidity=4.0),
    Underlying("QQQ", 510.0, 0.19, 1.2, 0.006, penny=True, liquidity=3.0),
    Underlying("IWM", 225.0, 0.21, 1.2, 0.012, penny=True, liquidity=2.5),
    Underlying("DIA", 430.0, 0.14, 0.9, 0.016, penny=True, liquidity=0.6),
    Underlying("TLT", 90.0, 0.14, -0.2, 0.040, penny=True, liquidity=1.2),
    Underlying("GLD", 240.0, 0.15, 0.1, 0.0, penny=True, liquidity=1.0),
    Underlying("XLF", 48.0, 0.18, 1.1, 0.015, penny=True, liquidity=1.0),
    Underlying("EEM", 44.0, 0.19, 0.9, 0.022, penny=True, liquidity=1.0),
    Underlying("AAPL", 235.0, 0.26, 1.1, 0.004, penny=True, liquidity=2.5),
    Underlying("MSFT", 430.0, 0.24, 1.0, 0.007, penny=True, liquidity=1.8),
    Underlying("NVDA", 140.0, 0.48, 1.7, 0.0003, penny=True, liquidity=3.0),
    Underlying("AMZN", 210.0, 0.32, 1.3, 0.0, penny=True, liquidity=2.0),
    Underlying("META", 600.0, 0.35, 1.3, 0.0035, penny=True, liquidity=1.5),
    Underlying("GOOGL", 185.0, 0.30, 1.1, 0.0045, penny=True, liquidity=1.5),
    Underlying("TSLA", 330.0, 0.60, 1.8, 0.0, penny=True, liquidity=3.0),
    Underlying("AMD", 130.0, 0.50, 1.6, 0.0, penny=True, liquidity=1.5),
    Underlying("JPM", 240.0, 0.23, 1.0, 0.021, penny=True, liquidity=1.0),
)
_BY_SYMBOL = {u.symbol: u for u in DEFAULT_UNIVERSE}

_CHUNK = 512  # trading days per random stream
_ANCHOR = dt.date(2026, 1, 2)
_CALM, _STRESS = 0, 1
_P_TO_STRESS, _P_TO_CALM = 0.012, 0.06
_STRESS_MULT = 2.3
_KAPPA = 0.6  # mean reversion of the log-price deviation, per year
_MARKET_RHO = 0.6
_JUMP_RATE, _JUMP_MEAN, _JUMP_SD = 1.5 / 252, -0.035, 0.045


def underlying_for(symbol: str) -> Underlying:
    """Known symbols have hand-set parameters; any other symbol gets stable generated ones."""
    if symbol in _BY_SYMBOL:
        return _BY_SYMBOL[symbol]
    h = zlib.crc32(symbol.encode())
    rng = np.random.default_rng(h)
    return Underlying(
        symbol,
        price_2026=float(np.round(rng.uniform(15, 400), 2)),
        vol=float(rng.uniform(0.2, 0.6)),
        beta=float(rng.uniform(0.6, 1.6)),
        dividend_yield=float(np.round(rng.choice([0.0, rng.uniform(0.0, 0.035)]), 4)),
        penny=bool(rng.random() < 0.5),
        liquidity=float(rng.uniform(0.3, 1.5)),
    )


def risk_free_rate(day: dt.date) -> float:
    """A smooth deterministic short rate between 0.25% and 5.25%."""
    years = (day - dt.date(2005, 1, 3)).days / 365.25
    return float(0.0275 + 0.025 * np.sin(2 * np.pi * (years - 2.0) / 11.0))


def _rng(seed: int, name: str, chunk: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(name.encode()), chunk])


@lru_cache(maxsize=8)
def _sessions(last_chunk: int) -> tuple[dt.date, ...]:
    end = cal.FIRST_SESSION + dt.timedelta(days=int((last_chunk + 1) * _CHUNK * 1.5) + 10)
    return tuple(cal.trading_days(cal.FIRST_SESSION, end))


@lru_cache(maxsize=8)
def _session_array(last_chunk: int) -> np.ndarray:
    return np.array(_sessions(last_chunk), dtype="datetime64[D]")


def _session_index(day: dt.date) -> int:
    last_chunk = max(0, (day - cal.FIRST_SESSION).days // 700)
    days = _sessions(last_chunk)
    idx = int(np.searchsorted(_session_array(last_chunk), np.datetime64(day)))
    if idx >= len(days) or days[idx] != day:
        raise cal.NotATradingDay(f"{day.isoformat()} is not an NYSE trading day")
    return idx


@lru_cache(maxsize=64)
def _market_chunk(seed: int, chunk: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Market regime (per day), market shock z, market jump size for one chunk of days."""
    rng = _rng(seed, "__market__", chunk)
    u = rng.random(_CHUNK)
    z = rng.standard_normal(_CHUNK)
    jumps = np.where(rng.random(_CHUNK) < _JUMP_RATE, rng.normal(_JUMP_MEAN, _JUMP_SD, _CHUNK), 0.0)
    return u, z, jumps


@lru_cache(maxsize=16)
def _market_path(seed: int, n_chunks: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    parts = [_market_chunk(seed, c) for c in range(n_chunks)]
    u = np.concatenate([p[0] for p in parts])
    z = np.concatenate([p[1] for p in parts])
    jumps = np.concatenate([p[2] for p in parts])
    regime = np.empty(len(u), dtype=np.int8)
    state = _CALM
    for i, ui in enumerate(u):  # Markov chain, deterministic given u
        if state == _CALM and ui < _P_TO_STRESS:
            state = _STRESS
        elif state == _STRESS and ui < _P_TO_CALM:
            state = _CALM
        regime[i] = state
    return regime, z, jumps


def _ar1(x: np.ndarray, a: float, block: int = 256) -> np.ndarray:
    """y[i] = a*y[i-1] + x[i] with y[-1] = 0, vectorized per block: within a block
    y = a^i * cumsum(x / a^i) + a^(i+1) * y_prev (a^-block stays small, so no precision loss)."""
    out = np.empty(len(x))
    powers = a ** np.arange(block)
    prev = 0.0
    for start in range(0, len(x), block):
        seg = x[start:start + block]
        p = powers[: len(seg)]
        y = p * np.cumsum(seg / p) + a * p * prev
        out[start:start + len(seg)] = y
        prev = y[-1]
    return out


@lru_cache(maxsize=512)
def _price_path(seed: int, symbol: str, n_chunks: int) -> np.ndarray:
    """Closing prices for every session of ``n_chunks`` chunks."""
    und = underlying_for(symbol)
    regime, zm, jm = _market_path(seed, n_chunks)
    zi = np.concatenate([_rng(seed, symbol, c).standard_normal(_CHUNK) for c in range(n_chunks)])
    ji = np.concatenate([
        np.where(r.random(_CHUNK) < _JUMP_RATE * 0.5, r.normal(0.0, 0.06, _CHUNK), 0.0)
        for r in (_rng(seed, symbol + "#jump", c) for c in range(n_chunks))
    ])
    dt_ = 1.0 / 252
    vol = und.vol * np.where(regime == _STRESS, _STRESS_MULT, 1.0)
    rho = _MARKET_RHO if und.beta > 0 else -0.3
    shock = rho * zm + np.sqrt(1 - rho**2) * zi
    jumps = und.beta * jm + (0.0 if und.index else ji)
    decay = np.exp(-_KAPPA * dt_)
    # AR(1): dev[i] = decay * dev[i-1] + innovation[i]
    dev = _ar1(vol * np.sqrt(dt_) * shock + jumps, decay)
    days = _sessions(n_chunks - 1)[: len(dev)]
    years = np.array([(d - _ANCHOR).days / 365.25 for d in days])
    drift = 0.07 if und.beta > 0.3 else 0.02
    return und.price_2026 * np.exp(drift * years + dev)


def _n_chunks_for(idx: int) -> int:
    return idx // _CHUNK + 1


def regime_on(seed: int, day: dt.date) -> int:
    idx = _session_index(day)
    regime, _, _ = _market_path(seed, _n_chunks_for(idx))
    return int(regime[idx])


def spot_on(seed: int, symbol: str, day: dt.date) -> float:
    idx = _session_index(day)
    return float(_price_path(seed, symbol, _n_chunks_for(idx))[idx])


@lru_cache(maxsize=4096)
def listing_spot(seed: int, symbol: str, expiration: dt.date) -> float:
    """The underlying's close when an expiration is listed (the session on or before 370 days
    earlier; the first session for the earliest ones): it fixes that expiration's strike step."""
    anchor = max(cal.FIRST_SESSION, expiration - dt.timedelta(days=370))
    days = cal.trading_days(anchor - dt.timedelta(days=10), anchor)
    return spot_on(seed, symbol, days[-1] if days else cal.FIRST_SESSION)


def expirations(day: dt.date, weeklies: bool, horizon_days: int = 370) -> list[dt.date]:
    """Weekly Fridays for 8 weeks (when the name has weeklies) and monthly third Fridays for a
    year; a Friday holiday moves to the prior session. Only dates after ``day``."""
    return list(_expirations(day, weeklies, horizon_days))


@lru_cache(maxsize=64)
def _expirations(day: dt.date, weeklies: bool, horizon_days: int) -> tuple[dt.date, ...]:
    end = day + dt.timedelta(days=horizon_days)
    sessions = set(cal.trading_days(day, end + dt.timedelta(days=7)))
    out: set[dt.date] = set()
    fridays = pd.date_range(day + dt.timedelta(days=1), end, freq="W-FRI").date
    for f in fridays:
        third = 15 <= f.day <= 21
        if third or (weeklies and (f - day).days <= 56):
            e = f
            while e not in sessions and e > day:
                e -= dt.timedelta(days=1)
            if e > day:
                out.add(e)
    return tuple(sorted(out))


def _strike_step(und: Underlying, spot: float, t: float) -> float:
    if und.index:
        return 5.0 if spot < 10_000 else 25.0
    if spot < 25:
        return 0.5
    if spot < 200:
        return 1.0 if und.penny else 2.5
    if spot < 500:
        return 2.5 if t > 0.2 else 1.0 if und.penny else 5.0
    return 5.0


def _bid_ask(und: Underlying, theo: np.ndarray, k: np.ndarray, iv: np.ndarray, t: np.ndarray):
    """Quotes around the model value: wider away from the money and for less liquid names, on the
    tick grid, the mid never below the model value."""
    tick = np.where((theo < 3.0) & und.penny, 0.01, 0.05)
    z = np.abs(k) / (iv * np.sqrt(t))
    rel = 0.015 + 0.02 * z + 0.03 / np.sqrt(und.liquidity)
    spread = np.maximum(theo * rel, tick) + 0.02 * (theo < 1.0)
    bid = np.floor((theo - spread / 2) / tick) * tick
    ask = np.ceil((theo + spread / 2) / tick) * tick
    bid = np.round(np.maximum(bid, 0.0), 2)
    ask = np.maximum(ask, bid + tick)
    ask = np.round(np.where((bid + ask) / 2 < theo, ask + tick, ask), 2)  # mid never below theo
    return bid, ask


class SyntheticMarket(MarketSource):
    name = "synthetic"

    def __init__(self, universe: tuple[str, ...] = (), seed: int = 7, strikes_per_side: int = 20):
        self.universe = tuple(universe) or tuple(u.symbol for u in DEFAULT_UNIVERSE)
        self.seed = int(seed)
        self.strikes_per_side = int(strikes_per_side)

    def surface(self, und: Underlying, day: dt.date, k: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Implied vol for log-moneyness ``k = ln(K/F)`` and maturity ``t`` (years)."""
        stressed = regime_on(self.seed, day) == _STRESS
        base = und.vol * (_STRESS_MULT * 0.85 if stressed else 1.0)
        short_end = base * (1.35 if stressed else 0.9)
        long_end = base * (0.95 if stressed else 1.08)
        atm = long_end + (short_end - long_end) * np.exp(-t / 0.25)
        z = np.clip(k / (atm * np.sqrt(t)), -4.5, 4.5)
        skew = -0.09 if und.symbol not in ("GLD", "TLT") else -0.02
        smile = 1.0 + skew * z + 0.025 * z * z
        return np.maximum(atm * smile, 0.3 * atm)

    def load_chain(self, day: dt.date, max_dte: int | None = None) -> ChainLoad:
        day = cal.require_trading_day(day)
        r = risk_free_rate(day)
        grids = [self._grid(underlying_for(sym), day, r, max_dte=max_dte) for sym in self.universe]
        chain = conform(pd.concat(self._frames(grids, day, r), ignore_index=True))
        return ChainLoad(chain=chain, drops=DropLog(), sources=[f"synthetic(seed={self.seed})"])

    def intraday_quotes(self, legs: pd.DataFrame, at: pd.Timestamp) -> pd.DataFrame:
        """Model marks for option legs at time ``at``: the intraday spot, the day's IV surface at
        that spot, Black-Scholes-Merton price and Greeks with the remaining time (American legs
        floored at intrinsic). ``legs`` has underlying, expiration, strike, option_type; adds
        spot, mid, delta, gamma, vega, theta (per share; vega per vol point, theta per day)."""
        at = pd.Timestamp(at)
        at = at.tz_localize(cal.NY) if at.tzinfo is None else at.tz_convert(cal.NY)
        day = at.date() if cal.is_trading_day(at.date()) else cal.previous_trading_day(at.date())
        r = risk_free_rate(day)
        out = legs.copy()
        spots = {s: intraday_spot(self.seed, s, at) for s in out["underlying"].unique()}
        out["spot"] = out["underlying"].map(spots)
        close = cal.session_close(day)
        minutes_left = max((close - at).total_seconds() / 60.0, 0.0) if at.date() == day else 0.0
        t = ((pd.to_datetime(out["expiration"]) - pd.Timestamp(day)).dt.days.to_numpy(float)
             + minutes_left / 1440.0) / 365.0
        t = np.maximum(t, 1.0 / (365.0 * 1440.0))
        q = np.array([underlying_for(s).dividend_yield for s in out["underlying"]])
        S, K = out["spot"].to_numpy(float), out["strike"].to_numpy(float)
        call = (out["option_type"] == "C").to_numpy()
        iv = np.empty(len(out))
        for s in out["underlying"].unique():
            m = (out["underlying"] == s).to_numpy()
            fwd = S[m] * np.exp((r - q[m]) * t[m])
            iv[m] = self.surface(underlying_for(s), day, np.log(K[m] / fwd), t[m])
        g = bsm_greeks_numpy(S, K, t, np.full(len(S), r), q, iv, call)
        intrinsic = np.maximum(np.where(call, S - K, K - S), 0.0)
        american = np.array([not underlying_for(s).index for s in out["underlying"]])
        out["iv"] = iv
        theo = np.where(american, np.maximum(g["price"], intrinsic), g["price"])
        out["mid"] = theo
        bid, ask = np.empty(len(out)), np.empty(len(out))
        for s in out["underlying"].unique():
            m = (out["underlying"] == s).to_numpy()
            fwd = S[m] * np.exp((r - q[m]) * t[m])
            bid[m], ask[m] = _bid_ask(underlying_for(s), theo[m], np.log(K[m] / fwd), iv[m], t[m])
        out["bid"], out["ask"] = bid, ask
        out["delta"], out["gamma"] = g["delta"], g["gamma"]
        out["vega"], out["theta"] = g["vega"] / 100.0, g["theta"] / 365.0
        return out

    def closes(self, symbol: str, end: dt.date, n: int) -> pd.Series:
        return closes(self.seed, symbol, end, n)

    def intraday_chain(self, symbol: str, at: pd.Timestamp) -> pd.DataFrame:
        """The chain of one underlying at time ``at`` of a session: the day's grid and surface
        around the intraday spot, with the remaining days to expiration."""
        at = pd.Timestamp(at)
        at = at.tz_localize(cal.NY) if at.tzinfo is None else at.tz_convert(cal.NY)
        day = cal.require_trading_day(at.date())
        spot = round(intraday_spot(self.seed, symbol, at), 2)
        r = risk_free_rate(day)
        return conform(self._frames([self._grid(underlying_for(symbol), day, r, spot=spot)], day, r)[0])

    def _frames(self, grids: list[dict], day: dt.date, r: float) -> list[pd.DataFrame]:
        """The quoted chains of the underlyings' grids: model values (BSM for indexes; for
        equities and ETFs the engine's American model, all names in one batch), then quotes."""
        american = [g for g in grids if not g["und"].index]
        if american:
            cat = {k: np.concatenate([g[k] for g in american]) for k in ("strike", "t", "iv", "is_call")}
            spots = np.concatenate([np.full(len(g["strike"]), g["spot"]) for g in american])
            qs = np.concatenate([np.full(len(g["strike"]), g["und"].dividend_yield) for g in american])
            theo = american_price(spots, cat["strike"], cat["t"], r, qs, cat["iv"], cat["is_call"])
            ends = np.cumsum([len(g["strike"]) for g in american])
            for g, part in zip(american, np.split(theo, ends[:-1])):
                g["theo"] = part
        for g in grids:
            if g["und"].index:
                g["theo"] = bsm_price_numpy(g["spot"], g["strike"], g["t"], r, g["und"].dividend_yield, g["iv"],
                                            g["is_call"])
        return [self._frame(g, day, r) for g in grids]

    def _grid(self, und: Underlying, day: dt.date, r: float, spot: float | None = None,
              max_dte: int | None = None) -> dict:
        """One underlying's listed contracts on ``day`` (expirations, strikes, calls and puts) with
        their implied vols from the day's surface: everything but the model values and quotes.
        ``keep`` marks those within ``max_dte``: the arrays hold only those, and the quote noise is
        drawn for the full grid, so a kept row is the full chain's row."""
        spot = round(spot_on(self.seed, und.symbol, day), 2) if spot is None else spot
        q = und.dividend_yield
        exps = expirations(day, und.weeklies)
        exp_idx, t_parts, strike_parts = [], [], []
        for i, exp in enumerate(exps):
            t = (exp - day).days / 365.0
            atm_guess = und.vol * 1.5
            # Listed strikes stay listed, as on an exchange: every strike lies on a lattice of
            # base * 2^k for the expiration's own base step (from its spot at listing, so it does
            # not move with the day's price); as expiry nears k falls and the lattice refines,
            # keeping the coarser strikes listed earlier.
            base = _strike_step(und, listing_spot(self.seed, und.symbol, exp), 0.1)
            half_range = spot * (np.exp(3.0 * atm_guess * np.sqrt(t)) - 1.0)
            n_side = int(min(self.strikes_per_side, max(4, half_range // base)))
            width = base * 2.0 ** max(0, int(np.ceil(np.log2(max(half_range / n_side / base, 1.0)))))
            centre = np.round(spot / width) * width
            strikes = centre + width * np.arange(-n_side, n_side + 1)
            strikes = strikes[strikes >= 0.25 * spot]
            exp_idx.append(np.full(len(strikes), i))
            t_parts.append(np.full(len(strikes), t))
            strike_parts.append(strikes)
        # calls then puts over the same (expiration, strike) grid
        exp_i = np.tile(np.concatenate(exp_idx), 2)
        t = np.tile(np.concatenate(t_parts), 2)
        strike = np.tile(np.concatenate(strike_parts), 2)
        n_half = len(strike) // 2
        is_call = np.arange(len(strike)) < n_half
        fwd = spot * np.exp((r - q) * t)
        k = np.log(strike / fwd)
        keep = (np.array([(e - day).days for e in exps])[exp_i] <= max_dte if max_dte is not None
                else np.ones(len(strike), dtype=bool))
        iv = self.surface(und, day, k[keep], t[keep])
        return {"und": und, "spot": spot, "exps": exps, "exp_i": exp_i[keep], "t": t[keep], "strike": strike[keep],
                "is_call": is_call[keep], "k": k[keep], "iv": iv, "keep": keep}

    def _frame(self, g: dict, day: dt.date, r: float) -> pd.DataFrame:
        und, spot, exps, exp_i, theo = g["und"], g["spot"], g["exps"], g["exp_i"], g["theo"]
        t, strike, is_call, k, iv, q = g["t"], g["strike"], g["is_call"], g["k"], g["iv"], und.dividend_yield
        rng = _rng(self.seed, f"{und.symbol}|{day.isoformat()}", 0)
        bid, ask = _bid_ask(und, theo, k, iv, t)
        z = np.abs(k) / (iv * np.sqrt(t))
        base_oi = 4000 * und.liquidity * np.exp(-0.5 * z * z) * np.exp(-t)
        keep = g["keep"]
        oi = np.floor(base_oi * rng.lognormal(0.0, 0.6, len(keep))[keep]).astype("int64")
        vol_traded = np.floor(oi * rng.uniform(0.0, 0.25, len(keep))[keep]).astype("int64")
        root = und.roots[0] if und.roots else und.symbol
        exp_ts = pd.DatetimeIndex([pd.Timestamp(e) for e in exps])[exp_i]
        option_type = np.where(is_call, "C", "P")
        # OCC symbol: root padded to 6, yymmdd, C/P, strike x1000 in 8 digits
        prefix = np.array([f"{root:<6}{e:%y%m%d}" for e in exps], dtype=object)[exp_i]
        strike_code = np.char.zfill(np.round(strike * 1000).astype(np.int64).astype(str), 8)
        return pd.DataFrame({
            "quote_date": pd.Timestamp(day),
            "underlying": und.symbol,
            "root": root,
            "option_symbol": prefix + option_type.astype(object) + strike_code.astype(object),
            "expiration": exp_ts,
            "strike": strike,
            "option_type": option_type,
            "exercise_style": "E" if und.index else "A",
            "settlement": "cash" if und.index else "physical",
            "bid": bid,
            "ask": ask,
            "last": np.round(theo, 2),
            "volume": vol_traded,
            "open_interest": oi,
            "underlying_price": spot,
            "forward": np.nan,
            "rate": r,
            "dividend_yield": q,
            "multiplier": 100,
            "vendor_iv": np.nan,
            "vendor_delta": np.nan,
            "source": "synthetic",
        })


# -- intraday -------------------------------------------------------------------------------------

def intraday_spot(seed: int, symbol: str, at: pd.Timestamp) -> float:
    """The underlying at time ``at`` (tz-aware) during a session: a Brownian bridge in log price from
    the previous close to the day's close, one step a minute, seeded by (seed, symbol, day), so it
    ends exactly at the close the daily chain uses. Before the open: the previous close; after the
    close: the close."""
    at = pd.Timestamp(at)
    at = at.tz_localize(cal.NY) if at.tzinfo is None else at.tz_convert(cal.NY)
    day = at.date()
    if not cal.is_trading_day(day):
        day = cal.previous_trading_day(day)
        return spot_on(seed, symbol, day)
    prev, close = spot_on(seed, symbol, cal.previous_trading_day(day)), spot_on(seed, symbol, day)
    open_, end = cal.session_open(day), cal.session_close(day)
    n = int((end - open_).total_seconds() // 60)
    minute = int(np.clip((at - open_).total_seconds() // 60, 0, n))
    if at < open_:
        return prev
    if minute >= n:
        return close
    und = underlying_for(symbol)
    rng = _rng(seed, f"{symbol}|{day.isoformat()}|intraday", 0)
    steps = rng.standard_normal(n) * (und.vol / np.sqrt(252 * n))
    walk = np.concatenate([[0.0], np.cumsum(steps)])
    frac = np.arange(n + 1) / n
    bridge = walk - frac * walk[-1]  # pinned at 0 at both ends
    log_path = np.log(prev) + frac * np.log(close / prev) + bridge
    return float(np.exp(log_path[minute]))


def closes(seed: int, symbol: str, end: dt.date, n: int) -> pd.Series:
    """The last ``n`` session closes up to ``end`` (for historical VaR)."""
    days = cal.trading_days(end - dt.timedelta(days=int(n * 1.6) + 10), end)[-n:]
    return pd.Series([spot_on(seed, symbol, d) for d in days], index=pd.to_datetime(days), name=symbol)
