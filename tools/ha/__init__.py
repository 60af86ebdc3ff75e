"""A pg_auto_failover cluster to try the service on (`make run-ha`), shared by tests/ha and bench/ha.py."""
