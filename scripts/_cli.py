"""What the command-line entry points share."""

from __future__ import annotations

import sys


def print_failures(result) -> None:
    """Each failed step and failed asset check of a Dagster result, on stderr."""
    for event in result.all_events:
        if event.is_step_failure:
            err = event.event_specific_data.error
            while err is not None and err.cause is not None:  # the user's error, not Dagster's wrapper
                err = err.cause
            print(f"FAILED step {event.step_key}: {err.message.strip() if err else event.message}", file=sys.stderr)
        if event.event_type_value == "ASSET_CHECK_EVALUATION" and not event.event_specific_data.passed:
            print(f"FAILED check {event.event_specific_data.check_name} on "
                  f"{event.event_specific_data.asset_key.to_user_string()}", file=sys.stderr)
    print(f"run {result.run_id} failed; see it in the Dagster UI (make dev)", file=sys.stderr)
