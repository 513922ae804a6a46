"""optrader domain core: plain Python, no Dagster import.

Chain schema, market sources, JAX pricing, strategies, risk, broker, portfolio,
storage and reports. The Dagster layer (``assets/``, ``sensors/``, ``resources/``)
wraps these; :mod:`optrader_pipelines.definitions` binds everything.
"""

__version__ = "0.1.0"
