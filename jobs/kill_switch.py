"""Engage or release the kill switch from the Dagster UI (Launchpad): an explicit, recorded action."""

import dagster as dg

from optrader_pipelines.killswitch import KillSwitch
from resources.broker import BrokerResource
from resources.warehouse import WarehouseResource


class KillSwitchActionConfig(dg.Config):
    actor: str  # who is acting: recorded with the event
    reason: str


@dg.op
def release_kill_switch(context: dg.OpExecutionContext, config: KillSwitchActionConfig,
                        warehouse: WarehouseResource, broker: BrokerResource) -> None:
    """Release the kill switch of the configured account, recording who and why."""
    ks = KillSwitch(warehouse.get(), broker.account)
    before = ks.state()
    if not ks.release(config.reason, config.actor, context.run_id):
        context.log.info(f"kill switch was not engaged: {before.describe()}")
    else:
        context.log.warning(f"kill switch released by {config.actor}: {config.reason} (was: {before.describe()})")


@dg.op
def engage_kill_switch(context: dg.OpExecutionContext, config: KillSwitchActionConfig,
                       warehouse: WarehouseResource, broker: BrokerResource) -> None:
    """Engage the kill switch by hand: no opening order until it is released."""
    ks = KillSwitch(warehouse.get(), broker.account)
    if ks.engage(config.reason, config.actor, context.run_id):
        context.log.warning(f"kill switch engaged by {config.actor}: {config.reason}")
    else:
        context.log.info(f"kill switch already engaged: {ks.state().describe()}")


@dg.job(description="Release the kill switch (config: actor, reason); recorded in kill_switch_events.",
        executor_def=dg.in_process_executor)
def release_kill_switch_job():
    release_kill_switch()


@dg.job(description="Engage the kill switch by hand (config: actor, reason): opening orders stop.",
        executor_def=dg.in_process_executor)
def engage_kill_switch_job():
    engage_kill_switch()
