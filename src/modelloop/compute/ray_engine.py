"""The ``ray`` engine's connection: ``compute.address`` must answer before a worker takes any job.

``auto`` starts (or joins) a local Ray on 127.0.0.1; any other address is a running cluster's
(``ray://host:10001`` for Ray Client, ``host:6379`` for the GCS). An address that does not answer is
the user's to fix: a one-line error naming it and the command that starts one.
"""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

from ..errors import ConfigError

__all__ = ["check_address", "connect_ray"]

_HOW = "start one with `ray start --head --node-ip-address 127.0.0.1` or set compute.address: auto"


def check_address(address: str, timeout: float = 3.0) -> tuple[str, int] | None:
    """(host, port) of a cluster address that accepts a TCP connection; ConfigError when it does not.
    None for ``auto`` (a local Ray is started)."""
    if address == "auto":
        return None
    parts = urlsplit(address if "://" in address else f"ray://{address}")
    try:
        host, port = parts.hostname, parts.port or (10001 if parts.scheme == "ray" and "://" in address else 6379)
    except ValueError:
        host, port = None, None
    if not host or port is None:
        raise ConfigError(f"compute.address: must be auto, ray://HOST:PORT or HOST:PORT, got {address!r}")
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        raise ConfigError(f"compute.address: no Ray cluster answers at {address} ({exc.strerror or exc}); {_HOW}") \
            from None
    return host, port


def connect_ray(address: str) -> None:
    """Check ``address`` answers, then join it (Ray installed as the ``ray`` extra)."""
    check_address(address)
    try:
        import ray
    except ImportError:
        raise ConfigError("compute.engine: ray needs Ray installed: pip install 'modelloop[ray]'") from None
    if not ray.is_initialized():
        ray.init(address=None if address == "auto" else address, include_dashboard=False,
                 log_to_driver=False, **({"_node_ip_address": "127.0.0.1"} if address == "auto" else {}))
