"""The API contract: service/openapi.yaml, kept by hand, served as JSON."""

import json
from importlib.resources import files

import yaml

OPENAPI_PATH = files("service") / "openapi.yaml"
OPENAPI = yaml.safe_load(OPENAPI_PATH.read_text())
OPENAPI_JSON = json.dumps(OPENAPI).encode()
