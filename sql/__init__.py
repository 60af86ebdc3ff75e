"""sql/ ships inside the package as service.sql (see pyproject.toml); its files are data, read with importlib.resources."""
