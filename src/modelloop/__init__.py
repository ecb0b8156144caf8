"""modelloop: from raw data to a deployed, monitored model and back again.

The command line (``modelloop ...``) is a thin skin over this API::

    from modelloop import Project
    project = Project.load("modelloop.yaml")
    project.run()
    project.evaluate(data="new_labeled.csv")
"""

from __future__ import annotations

from .config import Config, load_config, parse_config
from .errors import ConfigError, DataError, ModelloopError, NotFoundError, StateError
from .project import Project

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
