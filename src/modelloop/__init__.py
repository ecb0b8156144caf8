"""modelloop: from raw data to a deployed, monitored model and back again.

The command line (``modelloop ...``) is a thin skin over this API::

    from modelloop import Project
    project = Project.load("modelloop.yaml")
    project.run()
    project.evaluate(data="new_labeled.csv")
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, DataError, ModelloopError, NotFoundError, StateError

# Polars' allocator (jemalloc, on Linux) reads this once, when Polars is first loaded, so it is set here,
# before any modelloop module imports Polars (the CLI and `import modelloop...` come through here first;
# a process that imported Polars earlier keeps Polars' defaults). Freed pages go back to the system after
# 100 ms, instead of 500 ms and then 1 s more as lazily freed pages that still count as resident: the
# profile's column passes free ~100 MiB a second, so its peak RSS at 1M x 30 drops by 30-50 MiB (benchmarks/
# RESULTS.md) for ~0.5 s more system CPU and about the same wall time. A value the user set wins; Polars' own, which `import polars` writes into the
# environment and so hands to child processes, does not.
_POLARS_JEMALLOC_DEFAULT = "dirty_decay_ms:500,muzzy_decay_ms:1000"
if os.environ.get("_RJEM_MALLOC_CONF", _POLARS_JEMALLOC_DEFAULT) == _POLARS_JEMALLOC_DEFAULT:
    os.environ["_RJEM_MALLOC_CONF"] = "dirty_decay_ms:100,muzzy_decay_ms:0"
# pyarrow's default pool (jemalloc or mimalloc) keeps what a pass freed for its next allocations, and its
# Parquet reader allocates from that pool whatever pool a caller passes: ingest's snapshot write (pyarrow
# copies the source a batch of rows at a time) peaked ~40 MiB higher at 1M x 30 than with the C library's
# allocator, whose freed memory `release_memory` hands back (malloc_trim), at the same speed (benchmarks/
# RESULTS.md). pyarrow reads this once, when its default pool is first made; a value the user set wins.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")

if TYPE_CHECKING:
    from .config import Config, load_config, parse_config
    from .project import Project

# Imported on first use (PEP 562): ``import modelloop.data.quality`` (the profile alone) then does not
# load the config schema, the catalog and SQLAlchemy, about 20 MiB of resident memory it never uses.
_LAZY = {"Config": "config", "load_config": "config", "parse_config": "config", "Project": "project"}

__all__ = [
    "Config",
    "ConfigError",
    "DataError",
    "ModelloopError",
    "NotFoundError",
    "Project",
    "StateError",
    "__version__",
    "load_config",
    "parse_config",
]

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        value = getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
