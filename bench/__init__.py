"""The benchmark harness of ticket-allocation: see bench/run.py."""

# The superuser the bench connects as finds tables and functions by name, as the owner role does
# (set on each database it creates: a copy does not inherit its template's settings). public first:
# yoyo keeps its tables there.
SEARCH_PATH = "public, ticket_allocation, api"
