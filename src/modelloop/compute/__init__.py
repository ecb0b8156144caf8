"""Compute: a durable priority job queue in the catalog, its scheduler and ``modelloop worker``.

Any modelloop command can be a job (``modelloop jobs submit --priority high --gpus 1 -- retrain``); a
worker runs the queue on this machine's pool: priority then age (with aging), gang allocation,
backfill by predicted duration, preemption (SIGTERM, grace, SIGKILL, re-queued). See docs/design.md,
"Compute".

Only the light names are here: the main config imports ``compute.config``, which runs this file. The
queue is ``compute.queue.JobQueue``; the API the CLI calls is in ``compute.jobs`` (it imports the
workspace, which imports the config).
"""

from __future__ import annotations

from .config import ComputeConfig, PoolConfig, parse_memory
from .resources import Resources, parse_priority
from .scheduler import Plan, Running, Waiting, plan

__all__ = ["ComputeConfig", "Plan", "PoolConfig", "Resources", "Running", "Waiting", "parse_memory",
           "parse_priority", "plan"]
