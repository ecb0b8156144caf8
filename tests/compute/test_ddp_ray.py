"""``ray_data_parallel`` (training/distributed.py): a data or config error a Ray Train worker raises reaches
the caller as itself (exit 2, as in one process), not as Ray's wrapper; any other failure is a RuntimeError
naming Ray's error. The training through TorchTrainer itself is tests/generative/test_generative_ddp.py's."""

from __future__ import annotations

import pytest

from modelloop.errors import DataError
from modelloop.training.distributed import _modelloop_error

ray_exceptions = pytest.importorskip("ray.train.v2.api.exceptions")


def test_the_ranks_own_modelloop_error_is_found_in_rays_worker_group_error():
    own = DataError("the validation loss is not defined on these rows")
    wrapped = RuntimeError("Ray's task error")
    wrapped.__cause__ = own
    assert _modelloop_error(ray_exceptions.WorkerGroupError("rank 0 failed", {0: wrapped})) is own
    assert _modelloop_error(ray_exceptions.WorkerGroupError("rank 1 failed", {1: own})) is own
    assert _modelloop_error(ray_exceptions.WorkerGroupError("rank 1 failed", {1: ValueError("x")})) is None
    assert _modelloop_error(RuntimeError("not Ray's")) is None


@pytest.mark.slow
def test_a_data_error_on_a_ray_train_rank_is_raised_as_itself(tmp_path):
    """Slow (a Ray head and Ray Train's controller and workers: about a minute here). Rank 1 waits in a
    broadcast that rank 0 never joins: Ray Train tears it down when rank 0 fails."""
    import ray
    from jobs_toy import ray_head

    from modelloop.training.distributed import ray_data_parallel

    def main(group):
        raise DataError("the validation loss is not defined on these rows")

    def worker(group):
        import torch
        import torch.distributed as dist

        dist.broadcast(torch.zeros(1), src=0)

    with ray_head(cpus=2) as (address, _):
        try:
            with pytest.raises(DataError, match="not defined on these rows"):
                ray_data_parallel(2, "cpu", main, worker, (), address=address, storage=tmp_path)
        finally:
            ray.shutdown()
    assert list(tmp_path.iterdir()) == []  # Ray Train's run folder removed
