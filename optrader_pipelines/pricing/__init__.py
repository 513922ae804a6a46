"""The pricing engine: Black-Scholes-Merton prices, Greeks and implied volatility in JAX.

* :mod:`.european`: closed-form price and Greeks (first and second order), conventions there.
* :mod:`.implied`: implied volatility to machine precision, with status codes.
* :mod:`.american`: American exercise (fixed-point engine, BS2002, reference tree); price, Greeks, IV.
* :mod:`.forwards`: vendor and put-call-parity forwards, dividend yields.
* :mod:`.table`: ``greeks_table``, the ``option_greeks`` asset's computation.
* :mod:`._runtime`: float64, padded shapes, one device per CPU core, persistent compile cache.
"""

from . import _runtime  # noqa: F401  (configures JAX before anything else imports it)
from ._runtime import PAD_SIZES
from .european import GREEKS, SECOND_ORDER, bsm_greeks, bsm_greeks_numpy, bsm_price_numpy, normalized_black
from .implied import IV_STATUS, IV_STATUS_ALL, implied_vol
from .american import METHODS as AMERICAN_METHODS
from .american import (american_greeks, american_implied_vol, american_price, early_exercise_premium_bound,
                       leisen_reimer_price)
from .forwards import dividend_yield_from_forward, implied_dividend_yields, parity_forwards
from .table import carry_yields, greeks_table, prepare_greeks_table

__all__ = ["PAD_SIZES", "GREEKS", "SECOND_ORDER", "bsm_greeks", "bsm_greeks_numpy", "bsm_price_numpy",
           "normalized_black", "IV_STATUS", "IV_STATUS_ALL", "implied_vol", "dividend_yield_from_forward",
           "greeks_table", "prepare_greeks_table", "carry_yields", "parity_forwards", "implied_dividend_yields", "AMERICAN_METHODS",
           "american_price", "american_greeks", "american_implied_vol", "leisen_reimer_price",
           "early_exercise_premium_bound"]
