"""The ``serve:`` section of ``modelloop.yaml``: every key has a default, so the section is optional.

Kept free of heavy imports (pydantic only): the main config imports it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

__all__ = ["ServeConfig", "serve_config"]


class ServeConfig(BaseModel):
    """Settings of ``modelloop serve``; CLI flags (--host/--port/--workers) override the first three."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # Loopback unless told otherwise: exposing the API is a deliberate act (``--host 0.0.0.0``).
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(1, ge=1, le=64, description="uvicorn processes sharing the port")
    # ray: the same app as Ray Serve replicas on compute.address's cluster (serving/ray_serve.py); Ray's
    # proxy balances the load and scales the replicas with the requests in flight between the two bounds
    engine: Literal["local", "ray"] = Field("local", description="local: uvicorn on this machine; ray: Ray "
                                            "Serve replicas on compute.address's cluster")
    min_replicas: int = Field(1, ge=1, le=1000, description="engine ray: fewest replicas")
    max_replicas: int = Field(1, ge=1, le=1000, description="engine ray: most replicas (more than min_replicas: "
                              "Ray Serve adds replicas while requests queue)")
    replica_cpus: float = Field(1.0, gt=0, description="engine ray: CPUs Ray reserves for each replica")
    # Micro-batching: a request never waits for a timer when the queue is idle; ``max_wait_ms``
    # only bounds how long an already-forming batch yields to the event loop for requests whose
    # bytes have already arrived (see serving/batching.py).
    max_batch_size: int = Field(64, ge=1, le=100_000, description="records per inference call")
    max_wait_ms: float = Field(2.0, ge=0, le=1000)
    max_body_bytes: int = Field(1_000_000, ge=1, description="413 above this request body size")
    max_records: int = Field(1000, ge=1, description="413 above this many records per request")
    api_keys_file: Path | None = Field(None, description="one key per line; env MODELLOOP_API_KEYS wins")
    ui: bool = Field(False, description="also serve the dashboard (modelloop ui's pages) under /ui, "
                                        "behind the same keys (modelloop serve --ui)")
    cors_origins: list[str] = Field(default_factory=list, description="empty: CORS off")
    cache_size: int = Field(0, ge=0, description="LRU response cache entries; 0: off")
    # FastAPI's own OpenTelemetry spans/metrics look up the global providers on every request
    # (~10 % of a no-op request's CPU); the Prometheus /metrics endpoint is always on.
    telemetry: bool = Field(False, description="FastAPI's native OpenTelemetry instrumentation")
    # A text model's network is the whole cost of a request: its session may use the cores the
    # HTTP stack leaves idle. Tabular sessions keep one thread (their requests are mostly HTTP).
    text_threads: int | None = Field(None, ge=1, le=256, description="ONNX Runtime threads of a text "
                                     "model's session; null: the CPUs this process may use / workers")
    reload_poll_seconds: float = Field(5.0, ge=0, description="production alias poll; 0: off")
    log_flush_ms: float = Field(200.0, gt=0, le=60_000, description="prediction log write interval")
    log_batch: int = Field(500, ge=1, le=100_000, description="prediction log rows per write")
    # generative models (the OpenAI-compatible routes): a request above either cap is a 400 naming it
    max_tokens: int = Field(512, ge=1, le=32_768, description="most tokens one completion may generate")
    # generative models: keys and values of prompts kept for later prompts that start with the same tokens
    # (the chat template's system turn, a conversation's earlier turns: families/generative/prefix_cache.py)
    prefix_cache_mb: float = Field(64.0, ge=0, le=65_536, description="MB of prompt keys and values a "
                                   "generative model keeps for prompts that start alike; 0: off")
    # who a cached prefix serves: a cached prefix answers faster, which tells a client how another's prompt
    # began. "key" (the default): with API keys configured, only requests with the same key (the cache is
    # salted by a hash of the key, as vLLM's cache_salt); the cost is one prefill of the shared system turn
    # per key. "shared": every request (one client, or clients that may know each other's prompts)
    prefix_cache_scope: Literal["key", "shared"] = Field("key", description="key: a served generative model's "
                                                        "cached prompt prefix serves only requests made with "
                                                        "the same API key; shared: every request")
    # recommenders (POST /v1/recommend): a larger k is a 422 naming k
    max_k: int = Field(100, ge=1, le=10_000, description="most items one recommendation may list")
    max_prompt_tokens: int | None = Field(None, ge=1, description="most prompt tokens; null: the model's "
                                                                  "context less the request's max_tokens")
    # image models keep each served image for feedback-driven retraining; past this the least recently
    # served are pruned (families/image/served.py)
    max_served_images_bytes: int = Field(1 << 30, ge=1, description="cap of .modelloop/served_images "
                                         "(an image model's kept requests); least recently served pruned first")
    served_images_days: float | None = Field(30.0, gt=0, description="retention of .modelloop/served_images: "
                                             "images last served longer ago are deleted; within it the cap "
                                             "keeps those still awaiting feedback; null: the cap alone")

    @field_validator("max_replicas")
    @classmethod
    def _not_below_min(cls, value: int, info: ValidationInfo) -> int:
        low = info.data.get("min_replicas")
        if low is not None and value < low:
            raise PydanticCustomError("below_min_replicas", "must be >= serve.min_replicas ({low})", {"low": low})
        return value


def serve_config(config: object) -> ServeConfig:
    """The ``serve`` section of a project config, or the defaults until the section exists."""
    return getattr(config, "serve", None) or ServeConfig()
