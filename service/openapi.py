"""The API contract: service/openapi.yaml, kept by hand, served as JSON."""

import json
from pathlib import Path

import yaml

OPENAPI_PATH = Path(__file__).with_name("openapi.yaml")
OPENAPI = yaml.safe_load(OPENAPI_PATH.read_text())
OPENAPI_JSON = json.dumps(OPENAPI).encode()
