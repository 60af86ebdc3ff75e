"""The benchmark harness of ticket-allocation: see bench/run.py."""

# The bench's own connections (its loads, its checks, pgbench) name the tables and the SQL API
# unqualified, as the owner does; the service qualifies its calls (api.*), and migrations must run
# with the default search_path (yoyo keeps its tables in public).
SEARCH_PATH = "-c search_path=ticket_allocation,api,public"
