"""Tools for the checkout that are not the service: run from the project root (`make run-ha`, bench/)."""
