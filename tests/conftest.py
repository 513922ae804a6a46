import datetime as dt
import os
import warnings
from pathlib import Path

import pytest

warnings.filterwarnings("ignore")
os.environ.setdefault("DAGSTER_HOME", "")  # never touch a user's instance from tests
if not os.environ["DAGSTER_HOME"]:
    del os.environ["DAGSTER_HOME"]

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
if not SHARED_DATA.is_dir():
    SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"

DAY = dt.date(2026, 11, 20)  # a Friday session
SMALL_UNIVERSE = ["SPY", "IWM", "XLF", "AMD"]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared vendor data not found at {SHARED_DATA} (absent in a user's clone)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def small_chain():
    from optrader_pipelines.market.synthetic import SyntheticMarket

    return SyntheticMarket(tuple(SMALL_UNIVERSE), seed=7, strikes_per_side=12).load_chain(DAY).chain


@pytest.fixture(scope="session")
def small_greeks(small_chain):
    from optrader_pipelines.pricing import greeks_table

    return greeks_table(small_chain)
