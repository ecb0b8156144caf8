"""``modelloop predict --engine ray``: a large file scored in parallel chunks by Ray workers.

The file is read and written here, chunk by chunk, exactly as ``serving.batch.predict_file`` does (the
same reader, the same temporary file renamed at the end, the same row numbers in errors); only the
scoring moves: each chunk goes to one of N Ray actors (one per CPU of the cluster, at most one per
chunk), each of which loads the model version the run started with once and scores with
``batch.score_chunk``, the function the local run calls. At most two chunks per actor are in flight,
so memory stays bounded on a file larger than memory, and the answers are written in the file's order.
A family that reads its own kind of input (images) is scored here, as without Ray.

The cluster is ``compute.address`` (``auto``: a local Ray, stopped at the end). The actors read the
project folder at the same path, as the ``ray`` job engine's tasks do.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from ..compute.ray_engine import connect_ray
from ..errors import ModelloopError
from ..workspace import Workspace
from .batch import _format, _out_encoding, predict_file, score_chunk

__all__ = ["ChunkScorer", "predict_file_on_ray"]


class ChunkScorer:
    """A Ray actor's state: the project's workspace and one loaded model version."""

    def __init__(self, config: dict[str, Any], root: str, model: str) -> None:
        from ..config import parse_config
        from .runtime import load_runtime

        self.runtime = load_runtime(Workspace(parse_config(config, root=root)), model, text_threads=1)

    def score(self, chunk: pd.DataFrame, offset: int) -> tuple[pd.DataFrame, list[str]]:
        return score_chunk(self.runtime, chunk, offset)


def predict_file_on_ray(ws: Workspace, data: str | Path, out: str | Path, *, model: str | None = None,
                        progress: Callable[[int], None] | None = None, chunk_rows: int = 20_000,
                        workers: int | None = None, out_encoding: str | None = None) -> dict[str, Any]:
    """``predict_file`` with the chunks scored by ``workers`` Ray actors (default: the cluster's CPUs);
    the same answer, plus ``engine: ray`` and ``workers``."""
    _out_encoding(Path(data), _format(Path(out), "--out"), out_encoding)  # a bad option exits before Ray starts
    address = ws.config.compute.address
    ray = connect_ray(address)
    n = max(1, int(workers or ray.cluster_resources().get("CPU", 1)))
    actor = ray.remote(num_cpus=1)(ChunkScorer)
    config = ws.config.model_dump(mode="json")

    def map_chunks(runtime: Any, chunks: Iterator[tuple[int, pd.DataFrame]]) -> Iterator[tuple[pd.DataFrame, list[str]]]:
        ref = f"{runtime.name}:{runtime.version}"        # every actor scores the version this run started with
        pool: list[Any] = []
        pending: collections.deque[Any] = collections.deque()
        try:
            for i, (offset, chunk) in enumerate(chunks):
                if len(pool) < n:
                    pool.append(actor.remote(config, str(ws.root), ref))
                pending.append(pool[i % n].score.remote(chunk, offset))
                while len(pending) >= 2 * n:
                    yield _get(ray, pending.popleft())
            while pending:
                yield _get(ray, pending.popleft())
        finally:
            for a in pool:
                ray.kill(a)

    try:
        result = predict_file(ws, data, out, model=model, chunk_rows=chunk_rows, progress=progress,
                              map_chunks=map_chunks, out_encoding=out_encoding)
    finally:
        if address == "auto":
            ray.shutdown()
    return {**result, "engine": "ray", "workers": n}


def _get(ray: Any, ref: Any) -> Any:
    """The actor's answer; the error a chunk raised (a row the server would refuse) as itself."""
    try:
        return ray.get(ref)
    except Exception as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, ModelloopError):
            raise cause from None
        raise
