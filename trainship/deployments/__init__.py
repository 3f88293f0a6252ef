"""Deployments as the API sees them: Step Functions executions, read and summarised.

A deployment id is the execution name. ``store`` reads the status record from
DescribeExecution and GetExecutionHistory (summarised by ``history``) and keeps the list;
``build_logs`` reads a build's log from its file or CloudWatch Logs; ``archive`` keeps
finished records on disk for the local stack, whose Step Functions (moto) forgets them
at a restart. Reading never writes: the archive is written when a deployment starts and
by ``DeploymentStore.sync_archive``, which the local stack calls every few seconds and
when it stops.
"""

from trainship.deployments.archive import INTERRUPTED
from trainship.deployments.build_logs import read_build_log
from trainship.deployments.history import summarize_history
from trainship.deployments.store import DeploymentStore

__all__ = ["INTERRUPTED", "DeploymentStore", "read_build_log", "summarize_history"]
