"""The benchmark harness of ticket-allocation: see bench/run.py."""
