"""Trading settings: risk profile and level, how many signals, where reports go."""

from __future__ import annotations

import dagster as dg

from optrader_pipelines.management import RuleBook, rulebook_from_json
from optrader_pipelines.risk import LEVEL_SCALE, RiskProfile, get_profile


class TradingSettingsResource(dg.ConfigurableResource):
    risk_profile: str = "small_account"
    risk_level: str = "moderate"
    top_n: int = 4
    report_dir: str = "data/reports"
    market_label: str = "synthetic"
    management_rules: str = ""  # JSON: {"default": {...}, "<strategy>": {...}} over ManagementRules fields

    def rulebook(self) -> RuleBook:
        return rulebook_from_json(self.management_rules)

    def profile(self) -> RiskProfile:
        if self.risk_level not in LEVEL_SCALE:
            raise ValueError(f"risk_level {self.risk_level!r} is not one of {', '.join(LEVEL_SCALE)}")
        return get_profile(self.risk_profile)
