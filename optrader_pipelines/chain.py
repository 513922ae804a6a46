"""The option-chain schema every market source produces, and the drop log loaders keep.

One row per contract per quote date. Dates are ``datetime64[ns]`` (midnight, no time zone).
``rate`` and ``dividend_yield`` are continuously compounded annual rates; ``forward`` is the
vendor's forward price for the expiry when the source has one (NaN otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

CHAIN_COLUMNS: dict[str, str] = {
    "quote_date": "datetime64[ns]",
    "underlying": "object",
    "root": "object",
    "option_symbol": "object",
    "expiration": "datetime64[ns]",
    "strike": "float64",
    "option_type": "object",  # "C" or "P"
    "exercise_style": "object",  # "A" (American) or "E" (European)
    "settlement": "object",  # "cash" or "physical"
    "bid": "float64",
    "ask": "float64",
    "last": "float64",
    "volume": "int64",
    "open_interest": "int64",
    "underlying_price": "float64",
    "forward": "float64",
    "rate": "float64",
    "dividend_yield": "float64",
    "multiplier": "int64",
    "vendor_iv": "float64",
    "vendor_delta": "float64",
    "source": "object",
}

CHAIN_KEY = ["quote_date", "underlying", "root", "expiration", "strike", "option_type"]


class ChainError(ValueError):
    """A chain source could not be read; the message names the file, row or symbol."""


def occ_symbol(root: str, expiration: pd.Timestamp, option_type: str, strike: float) -> str:
    """OCC option symbol: root padded to 6, yymmdd, C/P, strike x1000 in 8 digits."""
    return f"{root:<6}{expiration:%y%m%d}{option_type}{int(round(strike * 1000)):08d}"


def empty_chain() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in CHAIN_COLUMNS.items()})


def conform(df: pd.DataFrame) -> pd.DataFrame:
    """Order and type the chain columns (missing optional columns become NaN)."""
    out = pd.DataFrame(index=df.index)
    for col, dtype in CHAIN_COLUMNS.items():
        if col in df:
            out[col] = df[col]
        elif col in ("forward", "last", "vendor_iv", "vendor_delta"):
            out[col] = np.nan
        else:
            raise ChainError(f"chain is missing required column {col!r}")
    for col in ("quote_date", "expiration"):
        # a naive datetime64 column only changes unit; anything else is parsed
        ready = pd.api.types.is_datetime64_dtype(out[col]) and not isinstance(out[col].dtype, pd.DatetimeTZDtype)
        out[col] = (out[col] if ready else pd.to_datetime(out[col])).astype("datetime64[ns]")
    for col in ("volume", "open_interest", "multiplier"):
        out[col] = out[col].astype("int64")
    for col, dtype in CHAIN_COLUMNS.items():
        if dtype == "float64":
            out[col] = out[col].astype("float64")
    return out.reset_index(drop=True)


def days_to_expiry(frame: pd.DataFrame, day) -> pd.Series:
    """Calendar days from ``day`` to each row's ``expiration`` (a chain's or a position's)."""
    return (pd.to_datetime(frame["expiration"], cache=False) - pd.Timestamp(day)).dt.days


def as_text(values, fmt=str) -> np.ndarray:
    """``fmt`` of each value as an object array, formatting each distinct value once (a chain
    column has few distinct expirations, strikes or roots among thousands of rows)."""
    codes, uniques = pd.factorize(pd.Series(values), use_na_sentinel=False)  # NaN is a value too
    text = np.empty(len(uniques), dtype=object)
    text[:] = [fmt(u) for u in uniques]
    return text[codes]


def _iso(value) -> str:
    return pd.Timestamp(value).date().isoformat()


def iso_dates(values) -> np.ndarray:
    """'YYYY-MM-DD' for a column of dates (datetime64, dates, timestamps or ISO strings)."""
    return as_text(values, _iso)


def contract_index(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """``columns`` of a chain indexed by (underlying, expiration 'YYYY-MM-DD', strike, option type),
    the keys a position's legs carry; the first row of a duplicated contract."""
    idx = pd.MultiIndex.from_arrays(
        [frame["underlying"].to_numpy(), iso_dates(frame["expiration"]), frame["strike"].to_numpy(float),
         frame["option_type"].to_numpy()], names=["underlying", "_exp", "strike", "option_type"])
    out = pd.DataFrame({c: frame[c].to_numpy() for c in columns}, index=idx)
    return out[~out.index.duplicated()]


@dataclass
class DropLog:
    """Rows a loader removed, counted by file and reason: recorded, never silent."""

    rows: list[dict] = field(default_factory=list)

    def add(self, source: str, reason: str, count: int, example: str = "") -> None:
        if count:
            self.rows.append({"source": source, "reason": reason, "count": int(count), "example": example})

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=["source", "reason", "count", "example"])

    @property
    def total(self) -> int:
        return sum(r["count"] for r in self.rows)


def drop_bad_quotes(df: pd.DataFrame, drops: DropLog, source: str) -> pd.DataFrame:
    """Remove rows whose quotes cannot be priced, recording each reason with its count.

    Reasons: non-finite bid/ask/strike/underlying price, negative quotes, crossed market
    (bid > ask), no quote at all (bid = ask = 0), expiration not after the quote date.
    """
    checks = [
        ("non-finite bid, ask, strike or underlying price",
         ~np.isfinite(df[["bid", "ask", "strike", "underlying_price"]].to_numpy(dtype="float64")).all(axis=1)),
        ("negative bid or ask", (df["bid"] < 0) | (df["ask"] < 0)),
        ("non-positive strike or underlying price", (df["strike"] <= 0) | (df["underlying_price"] <= 0)),
        ("crossed quote (bid > ask)", df["bid"] > df["ask"]),
        ("zero quote (bid = ask = 0)", (df["bid"] == 0) & (df["ask"] == 0)),
        ("expiration not after quote date", df["expiration"] <= df["quote_date"]),
    ]
    keep = np.ones(len(df), dtype=bool)
    for reason, bad in checks:
        bad = np.asarray(bad, dtype=bool) & keep
        if bad.any():
            first = df.index[bad][0]
            drops.add(source, reason, int(bad.sum()), example=f"row {first}")
        keep &= ~bad
    return df[keep]
