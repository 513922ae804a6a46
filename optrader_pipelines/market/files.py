"""End-of-day chains from vendor files: iVolatility, HistoricalOptionData, DeltaNeutral, CBOE DataShop.

The vendor is recognised from the header (column names are stripped of stray spaces and a
byte-order mark). Each format maps to the chain schema; rows that cannot be priced are dropped
with a counted reason (:func:`optrader_pipelines.chain.drop_bad_quotes`). A file whose header
matches no known format is an error naming the file, unless it is an auxiliary file the history
directory may also hold (FRED rates, OHLCV underlying prices), which is used for rates.

Conventions kept from the vendors (see ``../shared/data/README.md``): dates ``MM/DD/YYYY``
(ISO for CBOE); IV annualised; the iVolatility ``forward_price`` is kept in ``forward`` and used
by the Greeks. Rates: the FRED 3-month Treasury yield (``DGS3MO``, percent, last value on or
before the day) when the history holds one, else ``OPTRADER_RISK_FREE_RATE`` (default 0.02).
Dividend yield: implied per expiry from put-call parity near the money when the vendor gives no
forward (:func:`implied_dividend_yields`).
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from .. import calendar as cal
from ..chain import ChainError, DropLog, conform, drop_bad_quotes
from ..pricing.forwards import dividend_yield_from_forward, implied_dividend_yields
from . import ChainLoad, MarketSource, within_dte

INDEX_ROOTS = {
    "SPX": "SPX", "SPXW": "SPX", "SPXPM": "SPX", "XSP": "XSP", "NDX": "NDX", "NDXP": "NDX",
    "RUT": "RUT", "RUTW": "RUT", "VIX": "VIX", "VIXW": "VIX", "DJX": "DJX", "OEX": "OEX", "XEO": "OEX",
}

FORMATS: dict[str, set[str]] = {
    "ivolatility": {"symbol", "option_expiration", "call/put", "stock_price_close", "forward_price"},
    "historicaloptiondata": {"underlying", "underlying_last", "optionroot", "quotedate", "impliedvol"},
    "deltaneutral": {"underlyingsymbol", "underlyingprice", "optionsymbol", "datadate", "ivmean"},
    "cboe": {"underlying_symbol", "quote_date", "root", "bid_eod", "ask_eod", "underlying_bid_eod"},
}
AUXILIARY = {
    "fred": {"date"},  # DATE + one series column
    "ohlcv": {"date", "open", "high", "low", "close"},
}


def _clean_columns(cols) -> list[str]:
    return [str(c).replace("\ufeff", "").strip().lower() for c in cols]


def detect_format(path: Path) -> str:
    """Vendor name for an option file, ``"fred"``/``"ohlcv"`` for auxiliary files; else ChainError."""
    try:
        header = pd.read_csv(path, nrows=0, encoding="utf-8-sig")
    except Exception as exc:  # pandas raises several types for unreadable files
        raise ChainError(f"{path}: cannot read CSV header ({exc})") from exc
    cols = set(_clean_columns(header.columns))
    for name, needed in FORMATS.items():
        if needed <= cols:
            return name
    if AUXILIARY["ohlcv"] <= cols:
        return "ohlcv"
    if len(cols) == 2 and "date" in cols:
        return "fred"
    raise ChainError(f"{path}: unknown vendor format (columns: {', '.join(sorted(cols))})")


def _dates(series: pd.Series, fmt: str | None, path: Path, column: str) -> pd.Series:
    parsed = pd.to_datetime(series.astype(str).str.strip(), format=fmt, errors="coerce")
    bad = parsed.isna()
    if bad.any():
        row = int(bad.idxmax()) + 2  # header is line 1
        raise ChainError(f"{path}: line {row}: column {column!r} has an unreadable date {series[bad].iloc[0]!r}")
    return parsed


def _numbers(df: pd.DataFrame, cols: list[str], path: Path) -> None:
    for c in cols:
        if c not in df:
            raise ChainError(f"{path}: missing column {c!r}")
        converted = pd.to_numeric(df[c], errors="coerce")
        bad = converted.isna() & df[c].notna() & (df[c].astype(str).str.strip() != "")
        if bad.any():
            row = int(bad.idxmax()) + 2
            raise ChainError(f"{path}: line {row}: column {c!r} is not a number: {df.loc[bad, c].iloc[0]!r}")
        df[c] = converted


def _read(path: Path) -> pd.DataFrame:
    df = pd.read_csv(path, encoding="utf-8-sig", dtype=str, keep_default_na=False, na_values=[""])
    df.columns = _clean_columns(df.columns)
    return df


def _style(underlying: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    index = underlying.isin(set(INDEX_ROOTS.values())).to_numpy()
    return np.where(index, "E", "A"), np.where(index, "cash", "physical")


def _root_of(option_symbol: pd.Series) -> pd.Series:
    return option_symbol.astype(str).str.strip().str.extract(r"^([A-Z]+)")[0]


def parse_ivolatility(path: Path) -> pd.DataFrame:
    df = _read(path)
    _numbers(df, ["stock_price_close", "strike", "bid", "ask", "iv", "volume", "open_interest",
                  "forward_price", "delta"], path)
    underlying = df["symbol"].str.strip().str.upper()
    cp = df["call/put"].str.strip().str.upper()
    if not cp.isin(["C", "P"]).all():
        row = int((~cp.isin(["C", "P"])).idxmax()) + 2
        raise ChainError(f"{path}: line {row}: call/put must be C or P, got {df['call/put'][row - 2]!r}")
    style = df["style"].str.strip().str.upper()
    return pd.DataFrame({
        "quote_date": _dates(df["date"], "%m/%d/%Y", path, "date"),
        "underlying": underlying.map(lambda s: INDEX_ROOTS.get(s, s)),
        "root": _root_of(df["option_symbol"]),
        "option_symbol": df["option_symbol"].str.strip(),
        "expiration": _dates(df["option_expiration"], "%m/%d/%Y", path, "option_expiration"),
        "strike": df["strike"],
        "option_type": cp,
        "exercise_style": style,
        "settlement": np.where(style == "E", "cash", "physical"),
        "bid": df["bid"],
        "ask": df["ask"],
        "last": np.nan,
        "volume": df["volume"].fillna(0),
        "open_interest": df["open_interest"].fillna(0),
        "underlying_price": df["stock_price_close"],
        "forward": df["forward_price"].where(df["forward_price"] > 0),
        "vendor_iv": df["iv"],
        "vendor_delta": df["delta"],
        "source": f"ivolatility:{path.name}",
    })


def parse_historicaloptiondata(path: Path) -> pd.DataFrame:
    df = _read(path)
    _numbers(df, ["underlying_last", "strike", "last", "bid", "ask", "volume", "openinterest",
                  "impliedvol", "delta"], path)
    root = _root_of(df["optionroot"])
    underlying = df["underlying"].str.strip().str.upper().map(lambda s: INDEX_ROOTS.get(s, s))
    style, settle = _style(underlying)
    ctype = df["type"].str.strip().str.lower().map({"call": "C", "put": "P"})
    if ctype.isna().any():
        row = int(ctype.isna().idxmax()) + 2
        raise ChainError(f"{path}: line {row}: type must be call or put")
    return pd.DataFrame({
        "quote_date": _dates(df["quotedate"], "%m/%d/%Y", path, "quotedate"),
        "underlying": underlying,
        "root": root,
        "option_symbol": df["optionroot"].str.strip(),
        "expiration": _dates(df["expiration"], "%m/%d/%Y", path, "expiration"),
        "strike": df["strike"],
        "option_type": ctype,
        "exercise_style": style,
        "settlement": settle,
        "bid": df["bid"],
        "ask": df["ask"],
        "last": df["last"],
        "volume": df["volume"].fillna(0),
        "open_interest": df["openinterest"].fillna(0),
        "underlying_price": df["underlying_last"],
        "forward": np.nan,
        "vendor_iv": df["impliedvol"],
        "vendor_delta": df["delta"],
        "source": f"historicaloptiondata:{path.name}",
    })


def parse_deltaneutral(path: Path) -> pd.DataFrame:
    df = _read(path)
    _numbers(df, ["underlyingprice", "strike", "last", "bid", "ask", "volume", "openinterest",
                  "ivmean", "delta"], path)
    underlying = df["underlyingsymbol"].str.strip().str.upper()
    ctype = df["type"].str.strip().str.lower().map({"call": "C", "put": "P"})
    if ctype.isna().any():
        row = int(ctype.isna().idxmax()) + 2
        raise ChainError(f"{path}: line {row}: Type must be call or put")
    style, settle = _style(underlying.map(lambda s: INDEX_ROOTS.get(s, s)))
    return pd.DataFrame({
        "quote_date": _dates(df["datadate"], "%m/%d/%Y", path, "DataDate"),
        "underlying": underlying.map(lambda s: INDEX_ROOTS.get(s, s)),
        "root": _root_of(df["optionsymbol"]),
        "option_symbol": df["optionsymbol"].str.strip(),
        "expiration": _dates(df["expiration"], "%m/%d/%Y", path, "Expiration"),
        "strike": df["strike"],
        "option_type": ctype,
        "exercise_style": style,
        "settlement": settle,
        "bid": df["bid"],
        "ask": df["ask"],
        "last": df["last"],
        "volume": df["volume"].fillna(0),
        "open_interest": df["openinterest"].fillna(0),
        "underlying_price": df["underlyingprice"],
        "forward": np.nan,
        "vendor_iv": df["ivmean"],
        "vendor_delta": df["delta"],
        "source": f"deltaneutral:{path.name}",
    })


def parse_cboe(path: Path) -> pd.DataFrame:
    df = _read(path)
    _numbers(df, ["strike", "close", "trade_volume", "bid_eod", "ask_eod", "underlying_bid_eod",
                  "underlying_ask_eod", "open_interest"], path)
    underlying = df["underlying_symbol"].str.strip().str.lstrip("^").str.upper()
    underlying = underlying.map(lambda s: INDEX_ROOTS.get(s, s))
    ctype = df["option_type"].str.strip().str.upper()
    if not ctype.isin(["C", "P"]).all():
        row = int((~ctype.isin(["C", "P"])).idxmax()) + 2
        raise ChainError(f"{path}: line {row}: option_type must be C or P")
    style, settle = _style(underlying)
    ubid, uask = df["underlying_bid_eod"], df["underlying_ask_eod"]
    spot = np.where((ubid > 0) & (uask > 0), (ubid + uask) / 2, np.maximum(ubid, uask))
    return pd.DataFrame({
        "quote_date": _dates(df["quote_date"], "%Y-%m-%d", path, "quote_date"),
        "underlying": underlying,
        "root": df["root"].str.strip().str.upper(),
        "option_symbol": "",
        "expiration": _dates(df["expiration"], "%Y-%m-%d", path, "expiration"),
        "strike": df["strike"],
        "option_type": ctype,
        "exercise_style": style,
        "settlement": settle,
        "bid": df["bid_eod"],
        "ask": df["ask_eod"],
        "last": df["close"],
        "volume": df["trade_volume"].fillna(0),
        "open_interest": df["open_interest"].fillna(0),
        "underlying_price": spot,
        "forward": np.nan,
        "vendor_iv": np.nan,
        "vendor_delta": np.nan,
        "source": f"cboe:{path.name}",
    })


PARSERS = {
    "ivolatility": parse_ivolatility,
    "historicaloptiondata": parse_historicaloptiondata,
    "deltaneutral": parse_deltaneutral,
    "cboe": parse_cboe,
}


@lru_cache(maxsize=64)
def _parsed(path: str, mtime: float) -> tuple[str, pd.DataFrame]:
    p = Path(path)
    fmt = detect_format(p)
    if fmt not in PARSERS:
        return fmt, pd.DataFrame()
    return fmt, PARSERS[fmt](p)


def parse_file(path: Path) -> tuple[str, pd.DataFrame]:
    """(vendor, rows in the chain schema before quote checks) for one file; cached by mtime."""
    path = Path(path)
    if not path.exists():
        raise ChainError(f"{path}: file not found")
    return _parsed(str(path.resolve()), path.stat().st_mtime)


@dataclass
class RateSeries:
    """Annual risk-free rate by date: a FRED series (percent) or a constant."""

    series: pd.Series | None = None
    constant: float = 0.02
    source: str = "constant"

    def on(self, day: dt.date) -> float:
        if self.series is None:
            return self.constant
        upto = self.series.loc[: pd.Timestamp(day)]
        if upto.empty:
            raise ChainError(f"{self.source}: no rate on or before {day.isoformat()}")
        return float(upto.iloc[-1])

    @classmethod
    def from_fred(cls, path: Path) -> "RateSeries":
        df = pd.read_csv(path, encoding="utf-8-sig", dtype=str)
        df.columns = _clean_columns(df.columns)
        value_col = [c for c in df.columns if c != "date"][0]
        values = pd.to_numeric(df[value_col].str.strip().replace(".", np.nan), errors="coerce") / 100.0
        dates = pd.to_datetime(df["date"], errors="coerce")
        s = pd.Series(values.to_numpy(), index=dates).dropna().sort_index()
        return cls(series=s, source=f"fred:{path.name}")


class FilesMarket(MarketSource):
    """Chains for a date from every vendor file under ``history_dir`` that holds that date."""

    name = "files"

    def __init__(self, history_dir: Path | str, universe: tuple[str, ...] = (),
                 rate: float | None = None):
        self.history_dir = Path(history_dir)
        self.universe = tuple(s.upper() for s in universe)
        self.constant_rate = rate if rate is not None else float(os.environ.get("OPTRADER_RISK_FREE_RATE") or "0.02")

    def files(self) -> list[tuple[Path, str]]:
        if not self.history_dir.is_dir():
            raise ChainError(f"OPTRADER_HISTORY_DIR={self.history_dir} is not a directory")
        out = [(p, detect_format(p)) for p in sorted(self.history_dir.rglob("*.csv"))]
        if not any(fmt in PARSERS for _, fmt in out):
            raise ChainError(f"{self.history_dir}: no option chain files (iVolatility, HistoricalOptionData, "
                             "DeltaNeutral or CBOE CSV) found")
        return out

    def rates(self, files: list[tuple[Path, str]]) -> RateSeries:
        fred = [p for p, fmt in files if fmt == "fred"]
        preferred = [p for p in fred if "3MO" in p.name.upper()] or fred
        if preferred:
            return RateSeries.from_fred(preferred[0])
        return RateSeries(constant=self.constant_rate, source=f"constant {self.constant_rate}")

    def available_dates(self) -> list[dt.date]:
        dates: set[dt.date] = set()
        for p, fmt in self.files():
            if fmt in PARSERS:
                dates.update(d.date() for d in parse_file(p)[1]["quote_date"].unique())
        return sorted(dates)

    def load_chain(self, day: dt.date, max_dte: int | None = None) -> ChainLoad:
        day = cal.require_trading_day(day)
        files = self.files()
        drops = DropLog()
        frames, sources = [], []
        for path, fmt in files:
            if fmt not in PARSERS:
                continue
            rows = parse_file(path)[1]
            rows = rows[rows["quote_date"] == pd.Timestamp(day)]
            if rows.empty:
                continue
            sources.append(str(path))
            frames.append(rows)
        if not frames:
            raise ChainError(f"{self.history_dir}: no chain file holds {day.isoformat()}")
        chain = pd.concat(frames, ignore_index=True)
        if self.universe:
            missing = sorted(set(self.universe) - set(chain["underlying"]))
            if missing:
                raise ChainError(f"OPTRADER_UNIVERSE symbols with no chain on {day.isoformat()} in "
                                 f"{self.history_dir}: {', '.join(missing)}")
            chain = chain[chain["underlying"].isin(self.universe)]
        chain = within_dte(chain, day, max_dte)
        for src, part in chain.groupby("source", sort=False):
            kept = drop_bad_quotes(part, drops, src)
            chain = chain.drop(part.index.difference(kept.index))
        dup = chain.duplicated(["underlying", "root", "expiration", "strike", "option_type"], keep="first")
        if dup.any():
            drops.add("all files", "duplicate contract (kept the first file's row)", int(dup.sum()))
            chain = chain[~dup]
        rates = self.rates(files)
        chain = chain.assign(rate=rates.on(day), multiplier=100)
        t = (chain["expiration"] - chain["quote_date"]).dt.days / 365.0
        from_fwd = dividend_yield_from_forward(chain["underlying_price"], chain["forward"], t, chain["rate"])
        chain["dividend_yield"] = np.where(chain["forward"].notna(), from_fwd, implied_dividend_yields(chain))
        chain["volume"] = chain["volume"].astype("int64")
        chain["open_interest"] = chain["open_interest"].astype("int64")
        return ChainLoad(chain=conform(chain), drops=drops, sources=sources + [rates.source])
