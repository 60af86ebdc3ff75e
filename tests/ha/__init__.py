"""High availability: the service on a pg_auto_failover cluster (see cluster.py)."""
