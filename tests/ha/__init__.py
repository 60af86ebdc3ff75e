"""High availability: the service on a pg_auto_failover cluster (the cluster: tools/ha/cluster.py)."""
