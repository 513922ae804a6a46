"""Operational jobs that are not asset materializations: kill switch engage and release."""

from .kill_switch import engage_kill_switch_job, release_kill_switch_job

__all__ = ["engage_kill_switch_job", "release_kill_switch_job"]
