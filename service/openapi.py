"""The API contract: service/openapi.yaml, kept by hand, served as JSON."""

import json
from importlib.resources import files

import yaml

OPENAPI_PATH = files("service") / "openapi.yaml"
OPENAPI = yaml.safe_load(OPENAPI_PATH.read_text())
OPENAPI_JSON = json.dumps(OPENAPI).encode()


def admin_operations() -> list[str]:
    """Every admin route as "METHOD /path": the operations whose security names adminToken
    (tests/api/test_admin_token.py checks that exactly these answer 401 without the token)."""
    return [f"{method.upper()} {path}" for path, item in OPENAPI["paths"].items() for method, operation in item.items()
            if any("adminToken" in requirement for requirement in operation.get("security", []))]
