"""What a job asks for and what a pool has: CPUs, GPUs, memory and named custom resources.

One small value type for both, so that "does it fit" and "what is left" are the same arithmetic in the
scheduler, the submit checks and the benchmark.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from .config import PoolConfig, parse_memory

__all__ = ["PRIORITIES", "Resources", "asked_resources", "machine_pool", "parse_priority"]

# The names a user may give for a priority, and where they sit on the 0..100 scale.
PRIORITIES = {"low": 20, "normal": 50, "high": 80}


def parse_priority(value: str | int) -> int:
    """0..100 from ``high``/``normal``/``low`` or a number; ConfigError naming what is allowed."""
    text = str(value).strip().lower()
    if text in PRIORITIES:
        return PRIORITIES[text]
    try:
        number = int(text)
    except ValueError:
        number = None
    if number is None or not 0 <= number <= 100:
        raise ConfigError(f"--priority: must be high, normal, low or a whole number from 0 to 100, got {value!r}")
    return number


@dataclass(frozen=True)
class Resources:
    """An amount of each resource; memory in bytes."""

    cpus: float = 1.0
    gpus: int = 0
    memory: int = 0
    custom: dict[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, data: dict[str, Any]) -> Resources:
        return cls(cpus=float(data.get("cpus", 1.0)), gpus=int(data.get("gpus", 0)),
                   memory=int(data.get("memory", 0)), custom=dict(data.get("custom") or {}))

    def to_dict(self) -> dict[str, Any]:
        return {"cpus": self.cpus, "gpus": self.gpus, "memory": self.memory, "custom": dict(self.custom)}

    def fits(self, free: Resources) -> bool:
        """All of it fits in ``free`` (gang allocation: never a part)."""
        return (self.cpus <= free.cpus + 1e-9 and self.gpus <= free.gpus and self.memory <= free.memory
                and all(v <= free.custom.get(k, 0.0) + 1e-9 for k, v in self.custom.items()))

    def __add__(self, other: Resources) -> Resources:
        keys = set(self.custom) | set(other.custom)
        return Resources(self.cpus + other.cpus, self.gpus + other.gpus, self.memory + other.memory,
                         {k: self.custom.get(k, 0.0) + other.custom.get(k, 0.0) for k in keys})

    def __sub__(self, other: Resources) -> Resources:
        keys = set(self.custom) | set(other.custom)
        return Resources(self.cpus - other.cpus, self.gpus - other.gpus, self.memory - other.memory,
                         {k: self.custom.get(k, 0.0) - other.custom.get(k, 0.0) for k in keys})

    def shortfall(self, pool: Resources, where: str = "the pool") -> list[str]:
        """``gpus: 2 asked, the pool has 1`` for each resource the whole pool (``where``) could never give."""
        out = []
        for name, asked, has in (("cpus", self.cpus, pool.cpus), ("gpus", self.gpus, pool.gpus),
                                 ("memory", self.memory, pool.memory),
                                 *((k, v, pool.custom.get(k, 0.0)) for k, v in self.custom.items())):
            if asked > has + 1e-9:
                out.append(f"{name}: {_show(asked)} asked, {where} has {_show(has)}")
        return out


    def text(self) -> str:
        """``2 CPUs, 0 GPUs, 4.0 GiB`` (and the custom resources): a pool as messages name it."""
        custom = "".join(f", {k} {_show(v)}" for k, v in sorted(self.custom.items()))
        return f"{self.cpus:g} CPUs, {self.gpus} GPUs, {self.memory / 2**30:.1f} GiB{custom}"


def _show(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def _gpu_count() -> int:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return 0
    try:
        listed = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in listed.splitlines() if line.startswith("GPU "))


def machine_pool(cfg: PoolConfig) -> Resources:
    """The pool the local engine hands out: the config's figures, this machine's where it leaves them out."""
    memory = cfg.memory
    if memory is None:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return Resources(cpus=float(cfg.cpus if cfg.cpus is not None else (os.cpu_count() or 1)),
                     gpus=_gpu_count() if cfg.gpus is None else cfg.gpus, memory=int(memory),
                     custom=dict(cfg.custom))


def asked_resources(cpus: float | None, gpus: int | None, memory: str | None,
                    custom: list[str] | None) -> Resources:
    """A job's request from ``jobs submit``'s options (``--resource NAME=AMOUNT`` for custom ones)."""
    named: dict[str, float] = {}
    for item in custom or []:
        name, _, amount = item.partition("=")
        try:
            named[name.strip()] = float(amount)
        except ValueError:
            raise ConfigError(f"--resource: must be NAME=AMOUNT such as licence=1, got {item!r}") from None
        if not name.strip() or named[name.strip()] < 0:
            raise ConfigError(f"--resource: must be NAME=AMOUNT with an amount >= 0, got {item!r}")
    try:
        mem = parse_memory(memory) if memory is not None else 0
    except ValueError as exc:
        raise ConfigError(f"--memory: {exc}") from None
    return Resources(cpus=1.0 if cpus is None else float(cpus), gpus=gpus or 0, memory=mem, custom=named)
