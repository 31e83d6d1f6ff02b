"""rsir.scale: the same commands on a Dask cluster. Encoding an archive in partitions (``rsir index --dask``) and
ranking large query sets (``rsir eval --dask``); ``cluster.open_client`` starts a LocalCluster (``local:N``) or
connects to a scheduler address. dask and distributed are imported only when a cluster is asked for."""

from rsir.scale.cluster import ClusterError, open_client

__all__ = ["ClusterError", "open_client"]
