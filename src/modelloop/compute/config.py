"""The ``compute:`` section of ``modelloop.yaml``: where ``modelloop worker`` runs jobs and how it orders them.

Every key has a default, so the section is optional. Kept free of heavy imports (pydantic only): the
main config imports it.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["ComputeConfig", "PoolConfig", "parse_memory"]

_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
          "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_memory(value: str | int | float) -> int:
    """Bytes of ``64GiB``, ``512MB``, ``2g`` or a plain number of bytes; ValueError naming the units."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"must be a size >= 0 such as 512MiB or 64GiB, got {value}")
        return int(value)
    m = _MEMORY.match(str(value))
    unit = m.group(2).lower() if m else ""
    if m is None or unit not in _UNITS:
        raise ValueError(f"must be a size such as 512MiB, 8GB or 64GiB (units {', '.join(u for u in _UNITS if u)}), "
                         f"got {value!r}")
    return int(float(m.group(1)) * _UNITS[unit])


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class PoolConfig(_Section):
    """What the local engine may hand out on this machine; a key left out is the machine's own figure."""

    cpus: float | None = Field(None, gt=0, description="null: this machine's CPU count")
    gpus: int | None = Field(None, ge=0, description="null: the GPUs nvidia-smi lists (0 without it)")
    memory: int | None = Field(None, ge=0, description="bytes or a size such as 64GiB; null: this machine's RAM")
    custom: dict[str, float] = Field(default_factory=dict, description="named resources, e.g. {licence: 2}")

    @field_validator("memory", mode="before")
    @classmethod
    def _a_size(cls, value: object) -> object:
        return value if value is None else parse_memory(value)  # type: ignore[arg-type]


class ComputeConfig(_Section):
    """Settings of ``modelloop jobs`` and ``modelloop worker`` (docs/design.md, "Compute")."""

    engine: Literal["local", "ray"] = "local"
    address: str = Field("auto", description="ray: a cluster address (ray://host:10001 or host:6379); "
                                             "auto starts a local Ray on 127.0.0.1")
    pool: PoolConfig = Field(default_factory=PoolConfig)
    preemption: bool = True
    # A stopped job gets SIGTERM (a search fails and re-queues its trial in progress, a fine-tuning run
    # keeps its last epoch's checkpoint), then SIGKILL if it is still alive after this many seconds.
    grace_seconds: float = Field(30.0, ge=0, description="SIGTERM to SIGKILL, when a job is preempted or cancelled")
    # Priority points a waiting job gains per minute (capped at 100): a low job (20) waiting 10 hours
    # ranks with a fresh high one (80), and age breaks the tie, so nothing starves. Queues of a shared
    # pool are hours long: at 1 point a minute, aged low jobs outranked fresh high ones within the hour and
    # the high jobs' p95 wait on benchmarks/scheduler.py's trace was 0.74x FIFO's instead of 0.001x.
    aging_per_minute: float = Field(0.1, ge=0, description="priority points a waiting job gains per minute")
    poll_seconds: float = Field(1.0, gt=0, le=60, description="how often the worker looks at the queue")
    # A running job whose worker has not written a heartbeat for this long is taken as lost and re-queued
    # (a worker on this machine whose process is gone is taken as lost at once).
    lost_after_seconds: float = Field(60.0, gt=0, description="heartbeat age after which a worker is taken as dead")
    max_attempts: int = Field(3, ge=1, description="starts of a job whose worker died before it is failed")
