"""Where the work runs: ``local:N`` (a LocalCluster of N single-threaded worker processes that rsir starts and
stops) or the address of a running Dask scheduler (``tcp://host:8786``), whose workers must import rsir and read
the archive at the same path (shared storage)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rsir.errors import RsirError


class ClusterError(RsirError):
    """A cluster that cannot be started or reached, or a job that failed on it."""


def parse_spec(spec: str) -> tuple[str, int | str]:
    """``local:N`` -> ("local", N); an address -> ("address", address); anything else is refused."""
    m = re.fullmatch(r"local:(\d+)", spec.strip())
    if m:
        n = int(m.group(1))
        if not 1 <= n <= 256:
            raise ClusterError(f"--dask {spec}: the number of local workers must be 1 to 256")
        return "local", n
    if re.fullmatch(r"(tcp|tls|ucx|inproc)://[^\s]+|[A-Za-z0-9_.-]+:\d+", spec.strip()):
        return "address", spec.strip()
    raise ClusterError(f"--dask {spec!r}: expected local:N (N worker processes on this machine) or a scheduler "
                       "address such as tcp://10.0.0.5:8786")


@contextmanager
def open_client(spec: str, timeout: float = 30.0) -> Iterator[Any]:
    """A ``distributed.Client`` for ``spec``; a LocalCluster started here is closed when the block ends."""
    kind, value = parse_spec(spec)
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ClusterError("--dask needs the dask and distributed packages (pip install dask distributed)"
                           ) from None
    if kind == "local":
        # one thread per worker: encoders use numpy / torch threads of their own, and a worker killed takes
        # only its own partition with it
        cluster = LocalCluster(n_workers=int(value), threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=40)
        client = Client(cluster)
        try:
            yield client
        finally:
            client.close()
            cluster.close()
        return
    try:
        client = Client(str(value), timeout=timeout)
    except (OSError, TimeoutError) as e:
        raise ClusterError(f"--dask {value}: cannot reach the scheduler ({e})") from None
    try:
        yield client
    finally:
        client.close()


def n_workers(client: Any) -> int:
    """Workers the scheduler knows now (at least 1)."""
    return max(1, len(client.scheduler_info().get("workers", {})))
