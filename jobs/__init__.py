"""Operational jobs that are not asset materializations: intraday adjustments, kill switch engage
and release."""

from .adjustment import position_adjustment_job
from .kill_switch import engage_kill_switch_job, release_kill_switch_job

__all__ = ["engage_kill_switch_job", "position_adjustment_job", "release_kill_switch_job"]
