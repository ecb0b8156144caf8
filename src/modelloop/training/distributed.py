"""Data-parallel fine-tuning (``train.ddp_processes: N``): one training run in N processes on this machine.

Why: one fine-tuning run of a neural family uses one device. With N GPUs (or N spare CPU cores) the same
run can take its epochs N times faster by PyTorch's DistributedDataParallel: every process holds the same
network, trains on its own share of each batch, and the gradients are averaged (all-reduced) before each
optimizer step, so the weights stay identical everywhere.

How it is laid out here (the family's training loop stays one loop):

- Rank 0 is the calling process itself: it keeps the search's Optuna trial, writes the checkpoints, logs to
  MLflow and builds the model, exactly as a one-process run does. :func:`data_parallel` starts ranks
  1..N-1 as processes of Python's fork server running a family's worker function (importable, so it pickles), joins them
  by a file store in a private temporary folder (no listening store port), and tears the group down after.
- Each global batch of the one-process run (the same seeded permutation, the same ``batch_size``) is split
  row-wise over the ranks (:meth:`Group.split`), and each rank's loss is scaled so that the averaged
  gradient is the gradient of the global batch's loss: the loss curve is the one-process curve up to float
  rounding and dropout draws.
- Decisions (early stopping, the deadline, pruning) are taken by rank 0 on the validation rows and sent
  to every rank (:meth:`Group.decide`), so all ranks leave the epoch loop together.

Against ``torchrun``: the same process group and collectives for N ranks on one machine, with rank 0 kept
in the caller (torchrun starts every rank as a new process and rendezvouses through a TCP store); no
multi-node launch and no elastic restarts (torchrun's default is none either). Across machines, on
``compute.engine: ray``, :func:`ray_data_parallel` runs the ranks as the workers of Ray Train's
``TorchTrainer`` instead (rank 0 included, so what rank 0 runs must pickle). A family calls one entry,
:func:`run_ranks`, which picks between the two: the text, image and generative fine-tunes share it.

Backends: ``gloo`` on CPU (tested, 2 processes); ``nccl`` with one GPU a rank (``cuda:rank``) when the
run's device is CUDA. The CUDA/nccl path is written to PyTorch's documented recipe but has not been run:
no GPU was available when it was written. A rank that dies leaves the others blocked in a collective
until PyTorch's timeout (:data:`TIMEOUT`); then every rank fails with PyTorch's error.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import functools
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, ModelloopError

__all__ = ["SINGLE", "TIMEOUT", "Group", "check_processes", "data_parallel", "join_group", "ray_data_parallel",
           "ray_device", "ray_ranks_address", "report_epochs", "run_ranks"]

TIMEOUT = datetime.timedelta(minutes=30)


@dataclasses.dataclass(frozen=True)
class Group:
    """One rank's view of the process group; :data:`SINGLE` is the one-process run (no collectives)."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        """Rank 0: the process that checkpoints, reports to the trial and returns the result."""
        return self.rank == 0

    def split(self, rows: np.ndarray, weights: np.ndarray, least: int = 1) -> tuple[np.ndarray, float]:
        """This rank's rows of one global batch and the factor for its (weighted-mean) loss.

        The rows are every ``world``-th from ``rank``; the factor is the rank's share of the batch's loss
        ``weights`` (one per row) times ``world``, so that DDP's average of the ranks' gradients is the
        gradient of the whole batch's weighted-mean loss. A batch too short to give every rank ``least``
        rows (batch norm in training needs 2) goes to rank 0 whole; a rank left without rows steps on the
        batch's first ``least`` rows with factor 0, to stay in the all-reduce."""
        if self.world == 1:
            return rows, 1.0
        at = np.arange(len(rows))
        mine = at[self.rank :: self.world] if len(rows) >= least * self.world else at[: len(rows) * self.main]
        if len(mine) == 0:
            return rows[:least], 0.0
        return rows[mine], float(weights[mine].sum() / (weights.sum() or 1.0)) * self.world

    def sum(self, value: float) -> float:
        """``value`` summed over the ranks (every rank gets the sum)."""
        if self.world == 1:
            return value
        import torch
        import torch.distributed as dist

        t = torch.tensor([value], dtype=torch.float64, device=_collective_device())
        dist.all_reduce(t)
        return float(t.item())

    def decide(self, code: int) -> int:
        """Rank 0's ``code`` on every rank (the other ranks' argument is ignored)."""
        return self.decide_all([code])[0]

    def decide_all(self, codes: list[int]) -> list[int]:
        """Rank 0's ``codes`` on every rank, in one broadcast (the other ranks' values are ignored, not
        their count, which must be the same)."""
        if self.world == 1:
            return list(codes)
        import torch
        import torch.distributed as dist

        t = torch.tensor(codes if self.main else [0] * len(codes), dtype=torch.int64, device=_collective_device())
        dist.broadcast(t, src=0)
        return [int(v) for v in t.tolist()]

    def wrap(self, net: Any) -> Any:
        """``net`` under DistributedDataParallel (its weights broadcast from rank 0 now), or ``net``."""
        if self.world == 1:
            return net
        import torch

        device = _collective_device()
        ids = [device.index] if device.type == "cuda" else None
        if device.type == "cuda":  # batch-norm statistics over the global batch (GPU only; untested)
            net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)  # swaps the layers inside ``net``
        # static_graph: every step runs the same graph, so DDP learns after the first step which
        # trainable weights the network never reads (a backbone's pooler) without a search every step
        return torch.nn.parallel.DistributedDataParallel(net, device_ids=ids, static_graph=True)


SINGLE = Group()


def _collective_device() -> Any:
    import torch
    import torch.distributed as dist

    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def check_processes(n: int, device: str) -> None:
    """``n`` processes fit this machine: at most its CPU count, and its GPU count on CUDA."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"train.ddp_processes: {n!r} is not a whole number >= 1")
    cpus = os.cpu_count() or 1
    if n > cpus:
        raise ConfigError(f"train.ddp_processes: {n} is more than this machine's {cpus} CPUs; use 1..{cpus}")
    if device.startswith("cuda"):
        import torch

        gpus = torch.cuda.device_count()
        if n > gpus:
            raise ConfigError(f"train.ddp_processes: {n} is more than the {gpus} visible GPUs; use 1..{gpus}")


def _backend(device: str) -> str:
    return "nccl" if device.startswith("cuda") else "gloo"


def join_group(rank: int, world: int, store: str, device: str, threads: int) -> Group:
    """Join the process group as ``rank`` (a worker calls this first; rank 0 through :func:`data_parallel`)."""
    import torch
    import torch.distributed as dist

    torch.set_num_threads(max(1, threads))
    if device.startswith("cuda"):
        torch.cuda.set_device(rank)  # "cuda" now means this rank's own GPU (untested: no GPU here)
    # every rank is on this machine: keep gloo's connections on the loopback interface
    if Path("/sys/class/net/lo").exists():
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group(
        _backend(device), init_method=f"file://{store}", rank=rank, world_size=world, timeout=TIMEOUT
    )
    return Group(rank, world)


def leave_group() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def data_parallel(
    world: int, device: str, worker: Callable[..., Any], args: tuple[Any, ...], preload: tuple[str, ...] = ()
) -> Iterator[Group]:
    """Run ``worker(group, *args)`` in ``world - 1`` new processes and yield rank 0's :class:`Group`
    here; on leaving, wait for the workers and tear the group down. ``world == 1``: :data:`SINGLE`.

    The workers fork from Python's fork server (a clean process, never this threaded one), which imports
    ``worker``'s module and ``preload`` once: a second run in this process starts its ranks in well under
    a second instead of paying the imports again (about 5 s of transformers on a loaded 2-core machine)."""
    if world == 1:
        yield SINGLE
        return
    import multiprocessing as mp

    import torch

    check_processes(world, device)
    threads = max(1, torch.get_num_threads() // world)  # N processes share the cores one process had
    before = torch.get_num_threads()
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload([worker.__module__, *preload])  # no effect once the server runs
    with tempfile.TemporaryDirectory(prefix="modelloop-ddp-") as tmp:
        store = str(Path(tmp) / "store")
        procs = [
            ctx.Process(
                target=_worker_main,
                args=(worker, r, world, store, device, threads, args),
                daemon=True,
                name=f"modelloop-ddp-{r}",
            )
            for r in range(1, world)
        ]
        for p in procs:
            p.start()
        wait = 60.0
        try:
            _await_started(procs, store)
            group = join_group(0, world, store, device, threads)
            yield group
        except BaseException:
            # rank 0 left early (an error, a pruned trial, SIGTERM): the other ranks wait for it in their
            # next collective, which would not end before TIMEOUT; a pruned trial's ranks are already told
            wait = 5.0
            raise
        finally:
            leave_group()
            torch.set_num_threads(before)
            for p in procs:
                p.join(timeout=wait)
                if p.is_alive():
                    p.kill()
                    p.join()
    failed = [p.name for p in procs if p.exitcode not in (0, None)]
    if failed:
        raise RuntimeError(f"data-parallel worker(s) {', '.join(failed)} failed (see their error above)")


def _await_started(procs: list[Any], store: str) -> None:
    """Wait until every worker is running its code (it has unpickled its arguments and imported what it
    needs): one that exits first would otherwise leave rank 0 waiting for it at the rendezvous until
    :data:`TIMEOUT`."""
    import time

    waiting = list(procs)
    while waiting:
        for p in waiting:
            if p.exitcode is not None:
                raise RuntimeError(
                    f"data-parallel worker {p.name} exited (code {p.exitcode}) before joining "
                    "the process group (see its error above)"
                )
        waiting = [p for p in waiting if not Path(f"{store}.started-{p.name}").exists()]
        time.sleep(0.02)


def _worker_main(
    worker: Callable[..., Any],
    rank: int,
    world: int,
    store: str,
    device: str,
    threads: int,
    args: tuple[Any, ...],
) -> None:
    import multiprocessing as mp

    Path(f"{store}.started-{mp.current_process().name}").touch()
    group = join_group(rank, world, store, device, threads)
    try:
        worker(group, *args)
    finally:
        leave_group()


def run_ranks(world: int, device: str, rank_0: Callable[..., Any], worker: Callable[..., Any],
              args: tuple[Any, ...], *, deadline: float, ray_address: str | None = None,
              storage: Path | None = None, preload: tuple[str, ...] = (),
              in_process: dict[str, Any] | None = None,
              replay: Callable[[list[dict[str, Any]]], None] | None = None) -> Any:
    """One data-parallel fine-tune, whichever engine runs it: ``rank_0(group=, deadline=)`` is rank 0's loop
    and its value the result, ``worker(group, *args)`` the other ranks'. Without ``ray_address`` (or with
    one rank) rank 0 is this process and the others local processes (:func:`data_parallel`); with it
    every rank is a Ray Train worker on that cluster (:func:`ray_data_parallel`): ``rank_0`` must then
    pickle and the deadline (``time.monotonic()`` here) travels as wall-clock time, since each node's
    monotonic clock differs. ``in_process``: keyword arguments of ``rank_0`` that live in this process (an
    open Optuna trial, a callback after each epoch), given only when rank 0 runs here (None on Ray); there ``replay``
    gets instead the epochs' records of this run (``result["history"]`` from ``resumed_from_epoch``) once
    it has ended, so they are seen though they could not stop it. ``storage``: the folder beside the
    run's checkpoint, which holds Ray Train's run folder meanwhile."""
    if ray_address is None or world == 1:
        with data_parallel(world, device, worker, args, preload=preload) as group:
            return rank_0(group=group, deadline=deadline, **(in_process or {}))
    wall = math.inf if math.isinf(deadline) else time.time() + (deadline - time.monotonic())
    here_only = dict.fromkeys(in_process or {})  # None on the cluster: they cannot travel there
    main = functools.partial(_on_node_clock, functools.partial(rank_0, **here_only), wall)
    result = ray_data_parallel(world, device, main, worker, args, address=ray_address, storage=storage)
    if replay is not None:
        replay(result["history"][result["resumed_from_epoch"]:])
    return result


def _on_node_clock(rank_0: Callable[..., Any], wall_deadline: float, group: Group) -> Any:
    deadline = math.inf if math.isinf(wall_deadline) else time.monotonic() + (wall_deadline - time.time())
    return rank_0(group=group, deadline=deadline)


def ray_ranks_address(engine: str, address: str, world: int) -> str | None:
    """The cluster whose Ray Train workers run a fine-tune's ranks (``compute.engine: ray`` and
    ``train.ddp_processes`` > 1), else None (the ranks are local processes): what a train stage passes on."""
    return address if engine == "ray" and world > 1 else None


def report_epochs(trial: Any, history: list[dict[str, Any]], metric: str) -> None:
    """Report each epoch's validation score of a run that ran on Ray (rank 0 on the cluster cannot hold the
    Optuna trial) to ``trial`` once the run has ended, as the local loop does after each epoch: the
    trial is not pruned (its epochs have run), but the study's pruner sees its curve for later trials."""
    if trial is None:
        return
    for record in history:
        value = float(record[f"valid_{metric}"])
        trial.report(value if math.isfinite(value) else float("nan"), int(record["epoch"]) - 1)


def ray_data_parallel(world: int, device: str, main: Callable[[Group], Any], worker: Callable[..., Any],
                      args: tuple[Any, ...], *, address: str, storage: Path | None = None) -> Any:
    """Run the ``world`` ranks as the workers of Ray Train's ``TorchTrainer`` on the cluster at ``address``
    (``auto``: a local Ray): rank 0 runs ``main(group)``, ranks 1..N-1 ``worker(group, *args)``; returns
    what ``main`` returned. Ray Train joins the process group (gloo, or nccl with one GPU a worker on
    CUDA: untested, no GPU here); each worker asks the cluster for 1 CPU (and 1 GPU), so the calling
    job must not hold them. ``main`` pickles (no open trial, no callback into this process); its value,
    tensors and plain containers only (read back with ``torch.load(weights_only=True)``), comes back as
    the run's checkpoint, written by rank 0 under ``storage`` (a temporary folder there,
    removed after; it must be a path every node reaches, as the Ray job engine's project folder is).
    A rank that fails fails the run (no retry): a RuntimeError naming Ray's error. More workers than the
    cluster's CPUs beside the job that starts them (:func:`~modelloop.compute.ray_engine.cpus_beside_job`)
    would wait for ever: a ConfigError naming both, before anything starts."""
    from ..compute.ray_engine import connect_ray, cpus_beside_job

    total, held = cpus_beside_job(connect_ray(address))
    if world + held > total:
        job = f" and the job that starts them ({held:g} CPU)" if held else ""
        room = int(total - held)
        fix = f"lower train.ddp_processes to at most {room}" if room > 1 else "set train.ddp_processes: 1 (no Ray Train)"
        raise ConfigError(f"train.ddp_processes: {world} Ray Train workers (1 CPU each){job} need {world + held:g} "
                          f"CPUs, the Ray cluster at {address} has {total:g}; {fix} or add nodes to the cluster")
    import torch
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    gpu = device.startswith("cuda")
    if storage is not None:
        storage.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="modelloop-ray-train-", dir=storage) as tmp:
        trainer = TorchTrainer(
            _ray_rank,
            train_loop_config={"main": main, "worker": worker, "args": args, "device": device},
            torch_config=TorchConfig(backend=_backend(device), timeout_s=int(TIMEOUT.total_seconds())),
            scaling_config=ScalingConfig(num_workers=world, use_gpu=gpu,
                                         resources_per_worker={"CPU": 1, **({"GPU": 1} if gpu else {})}),
            run_config=RunConfig(name="ddp", storage_path=tmp, failure_config=FailureConfig(max_failures=0)),
        )
        try:
            result = trainer.fit()
        except Exception as exc:  # Ray's TrainingFailedError, with the rank's own error inside
            own = _modelloop_error(exc)
            if own is not None:
                raise own from None  # the user's to fix (exit 2), as in one process
            raise RuntimeError(f"data-parallel run on Ray ({world} TorchTrainer workers) failed: {exc}") from exc
        if result.checkpoint is None:
            raise RuntimeError("data-parallel run on Ray ended without rank 0's result")
        with result.checkpoint.as_directory() as folder:
            # tensors and plain containers only (weights, history, figures): a file on shared storage is
            # never unpickled as code, whoever could write there
            return _from_plain(torch.load(Path(folder) / _RESULT, map_location="cpu", weights_only=True))


_RESULT = "rank0.pt"
_ARRAY = "__modelloop_ndarray__"  # a NumPy array of rank 0's result, travelling as a tensor


def _to_plain(value: Any) -> Any:
    """Rank 0's result in what ``torch.load(weights_only=True)`` reads: NumPy arrays as marked tensors, NumPy
    scalars as Python numbers; :func:`_from_plain` undoes it, so the caller gets what one process returns."""
    import torch

    if isinstance(value, np.ndarray):
        return {_ARRAY: torch.from_numpy(np.ascontiguousarray(value))}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_plain(v) for v in value)
    return value


def _from_plain(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {_ARRAY}:
            return value[_ARRAY].numpy()
        return {k: _from_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_from_plain(v) for v in value)
    return value


def _modelloop_error(exc: BaseException) -> ModelloopError | None:
    """The :class:`ModelloopError` (a data or config error) a Ray Train worker raised, if that is what
    failed the run: Ray's ``WorkerGroupError`` holds each failed rank's exception, whose ``cause`` (Ray's
    task error) or ``__cause__`` is the rank's own."""
    todo: list[BaseException] = list(getattr(exc, "worker_failures", {}).values())
    while todo:
        e = todo.pop()
        causes = [c for c in (getattr(e, "cause", None), e.__cause__) if isinstance(c, BaseException)]
        if isinstance(e, ModelloopError) and not causes:
            return e
        todo += causes
    return None


def ray_device(address: str, preference: str, world: int) -> str:
    """The device of ``world`` Ray Train workers for ``model.device``: ``cuda`` or ``cpu`` as asked; for
    ``auto``, ``cuda`` when the cluster has a GPU for each worker. (The job that starts them holds no GPU
    itself, so its own ``auto`` would always see none.)"""
    if preference in ("cpu", "cuda"):
        return preference
    from ..compute.ray_engine import connect_ray

    return "cuda" if float(connect_ray(address).cluster_resources().get("GPU", 0)) >= world else "cpu"


def _ray_rank(config: dict[str, Any]) -> None:
    """One TorchTrainer worker: Ray Train has joined it to the process group."""
    import ray.train
    import torch

    ctx = ray.train.get_context()
    group = Group(ctx.get_world_rank(), ctx.get_world_size())
    if config["device"].startswith("cuda"):  # "cuda" is this worker's own GPU (untested: no GPU here)
        from ray.train.torch import get_device

        torch.cuda.set_device(get_device())
    if not group.main:
        config["worker"](group, *config["args"])
        ray.train.report({"rank": group.rank})  # every worker reports as often as rank 0 (Ray's barrier)
        return
    out = config["main"](group)
    with tempfile.TemporaryDirectory() as folder:
        torch.save(_to_plain(out), Path(folder) / _RESULT)
        ray.train.report({"rank": 0}, checkpoint=ray.train.Checkpoint.from_directory(folder))
