"""The reduction on a Dask cluster: partitions summarised on the workers, merged as a tree of bytes.

Each partition (a Parquet row group or an Arrow record batch) becomes one task,
:func:`~service.cli.reduce.summarise_packed`, that reads it by path on a worker and returns its
statistics as bytes; :func:`~service.cli.reduce.merge_packed` tasks then merge ``FANOUT`` results
at a time until one is left, so the client receives a single small result. Workers need
``xent-service`` installed and the files at the same paths (a shared file system).
"""

from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

from service.core.errors import MissingDependency

from .datasets import Partition
from .reduce import Job, Summary, merge_packed, summarise_packed

#: Results merged by one task of the reduction tree.
FANOUT = 8


class SchedulerError(Exception):
    """The Dask scheduler could not be reached."""


def distributed() -> Any:
    """The ``distributed`` module, or :class:`MissingDependency` naming the ``dask`` extra."""
    try:
        import distributed
    except ImportError:
        raise MissingDependency("dask[distributed]", "--scheduler", "dask") from None
    return distributed


def reduce_on_dask(
    parts: list[Partition],
    job: Job,
    scheduler: str,
    *,
    n_workers: int = 2,
    on_part: Callable[[int], None] | None = None,
) -> Summary:
    """Summarise `parts` on the cluster at `scheduler` (``tcp://host:port``, or ``local``)."""
    dask = distributed()
    with ExitStack() as stack:
        if scheduler == "local":
            cluster = stack.enter_context(
                dask.LocalCluster(
                    n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None
                )
            )
            client = stack.enter_context(dask.Client(cluster))
        else:
            try:
                client = stack.enter_context(dask.Client(scheduler, timeout="10s"))
            except OSError as exc:
                raise SchedulerError(f"{scheduler}: cannot reach the Dask scheduler: {exc}") from None
        return reduce_with(client, parts, job, on_part=on_part)


def reduce_with(
    client: Any, parts: list[Partition], job: Job, *, on_part: Callable[[int], None] | None = None
) -> Summary:
    """The tree reduction on an existing ``distributed.Client``."""
    if not parts:
        return Summary()
    job_future = client.scatter(job, broadcast=True)
    leaves = client.map(summarise_packed, parts, job=job_future, pure=False)
    level = leaves
    while len(level) > 1:
        level = [
            client.submit(merge_packed, *level[i : i + FANOUT], pure=False)
            for i in range(0, len(level), FANOUT)
        ]
    if on_part is not None:
        for future in distributed().as_completed(leaves):
            if future.status == "error":
                break  # the root's result() raises it
            on_part(1)
    return Summary.unpack(level[0].result())
