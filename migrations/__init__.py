"""migrations/ ships inside the package as service.schema_migrations (see pyproject.toml).

This file makes it importable, so that importlib.resources finds it both in a
checkout (editable install) and in the installed wheel. It is not a
migration: service/migrations.py leaves it out of what yoyo applies.
"""
