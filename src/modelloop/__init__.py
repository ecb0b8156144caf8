"""modelloop: from raw data to a deployed, monitored model and back again.

The command line (``modelloop ...``) is a thin skin over this API::

    from modelloop import Project
    project = Project.load("modelloop.yaml")
    project.run()
    project.evaluate(data="new_labeled.csv")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import ConfigError, DataError, ModelloopError, NotFoundError, StateError

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
