"""Fuzzing the HTTP API from its own contract (schemathesis): no 5xx, every answer as the spec says."""

import base64
import itertools
import json
import socket
import urllib.parse

import hypothesis
import pytest
import schemathesis
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from ..people import USER
from ..processes import Server, request, served_env

pytestmark = [pytest.mark.slow, pytest.mark.process]

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def served(own_postgres, tmp_path_factory):
    owner, api = own_postgres.new_database()
    server = Server(served_env(owner, api, WORKERS="1"), tmp_path_factory.mktemp("fuzz") / "server.log")
    # Something to find: an option and a purchase, so generated ids sometimes hit.
    status, option = request(server.port, "POST", "/ticket_options", {"name": "Fuzzed", "allocation": 10_000})
    assert status == 201
    request(server.port, "POST", f"/ticket_options/{option['id']}/purchases",
            {"quantity": 1, "user_id": USER})
    yield server
    assert server.stop() == 0
    assert "Traceback" not in server.log()


def test_the_api_keeps_its_contract(served):
    # Driven by hand rather than schemathesis' pytest plugin, which does not load under pytest 9.
    api_schema = schemathesis.openapi.from_url(f"http://127.0.0.1:{served.port}/openapi.json")
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert {op.label for op in operations} >= {
        "POST /ticket_options", "GET /ticket_options/{id}", "POST /ticket_options/{id}/purchases",
        "GET /ticket_options/{id}/purchases", "GET /purchases/{id}", "POST /purchases/{id}/cancel",
    }

    # Valid requests, and requests that break the spec on purpose (which must get a 4xx, never a 5xx).
    broken_on_purpose = set()
    for operation, mode in itertools.product(operations, GenerationMode):
        @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
        @hypothesis.settings(
            max_examples=60, deadline=None, derandomize=True, database=None,
            suppress_health_check=list(hypothesis.HealthCheck),
        )
        def keeps_the_contract(case):
            case.call_and_validate(checks=CHECKS)

        try:
            keeps_the_contract()
        except hypothesis.errors.Unsatisfiable:
            # Only a string path id to break, and any string is a valid one (404): nothing to send.
            assert mode is GenerationMode.NEGATIVE, operation.label
            continue
        if mode is GenerationMode.NEGATIVE:
            broken_on_purpose.add(operation.label)
    # Bodies and query strings were broken on purpose.
    assert broken_on_purpose >= {
        "POST /ticket_options", "POST /ticket_options/{id}/purchases", "GET /ticket_options/{id}/purchases"}


OPTION = "option-id"  # replaced by the served option's id
TOKEN = "fuzz-api-token"
UUID = USER  # well-formed
# Spellings of a UUID that uuid.UUID() or a careless parser might take.
UUID_FORMS = st.sampled_from([
    UUID, UUID.upper(), f"{{{UUID}}}", f"urn:uuid:{UUID}", f"{UUID}-", UUID.replace("-", ""), f" {UUID}",
    f"{UUID}\n", UUID.replace("1", "\uff11"), UUID[:-1], f"{UUID}0",
]) | st.text(max_size=40)
# Header values as bytes: what an HTTP client library would refuse to send (CR and LF would end the header).
HEADER_BYTES = st.binary(max_size=40).filter(lambda value: b"\r" not in value and b"\n" not in value)
CURSORS = st.sampled_from(["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "2026-01-01T00:00:00",
                           "2026-01-01T00:00:00+00:00"]).map(
    lambda moment: base64.urlsafe_b64encode(f"{moment}|{UUID}".encode()).decode()) | st.text(max_size=30)


def raw_status(port: int, head: bytes, body: bytes = b"") -> tuple[int, str]:
    """(status, content type) of one raw HTTP/1.1 request; the server must answer it."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    content_type = next((line.split(b":", 1)[1].strip().decode() for line in rest.split(b"\r\n")
                         if line.lower().startswith(b"content-type:")), "")
    return int(status_line.split()[1]), content_type


@pytest.fixture(scope="module")
def served_with_tokens(own_postgres, tmp_path_factory):
    owner, api = own_postgres.new_database()
    server = Server(served_env(owner, api, WORKERS="1", API_TOKENS=TOKEN, ADMIN_TOKEN="fuzz-admin"),
                    tmp_path_factory.mktemp("fuzz-headers") / "server.log")
    status, option = request(server.port, "POST", "/ticket_options", {"name": "Fuzzed", "allocation": 100_000},
                             headers={"Authorization": "Bearer fuzz-admin"})
    assert status == 201
    yield server, option["id"]
    assert server.stop() == 0
    assert "Traceback" not in server.log()


def test_headers_and_uuid_spellings_never_get_a_5xx(served_with_tokens):
    """Hand-made requests (schemathesis keeps headers and ids well-formed): any header bytes, any UUID
    spelling in a path, body or query, any cursor; every answer a 4xx problem or a success."""
    server, option_id = served_with_tokens

    @hypothesis.given(
        route=st.sampled_from(["buy", "list", "get", "create"]),
        authorization=st.sampled_from([f"Bearer {TOKEN}".encode()]) | HEADER_BYTES.map(lambda v: b"Bearer " + v),
        key=st.none() | HEADER_BYTES, request_id=st.none() | HEADER_BYTES, user_id=UUID_FORMS, cursor=CURSORS,
        quantity=st.integers(-2, 1002),
    )
    @hypothesis.settings(max_examples=300, deadline=None, derandomize=True, database=None,
                         suppress_health_check=list(hypothesis.HealthCheck))
    def answers_with_4xx_at_worst(route, authorization, key, request_id, user_id, cursor, quantity):
        headers = b"Host: fuzz\r\nAuthorization: " + authorization + b"\r\n"
        headers += b"Idempotency-Key: " + key + b"\r\n" if key is not None else b""
        headers += b"X-Request-ID: " + request_id + b"\r\n" if request_id is not None else b""
        json_type = b"Content-Type: application/json\r\n"
        if route == "buy":
            body = json.dumps({"quantity": quantity, "user_id": user_id}).encode()
            head = f"POST /ticket_options/{option_id}/purchases HTTP/1.1\r\n".encode() + headers + json_type
        elif route == "list":
            query = urllib.parse.urlencode({"user_id": user_id, "cursor": cursor})
            head, body = f"GET /ticket_options/{option_id}/purchases?{query} HTTP/1.1\r\n".encode() + headers, b""
        elif route == "get":
            path = urllib.parse.quote(user_id, safe="")
            head, body = f"GET /purchases/{path} HTTP/1.1\r\n".encode() + headers, b""
        else:
            body = json.dumps({"name": user_id or "x", "allocation": quantity}).encode()
            head = b"POST /ticket_options HTTP/1.1\r\n" + headers + json_type
        status, content_type = raw_status(server.port, head, body)
        assert status < 500, (route, head, body)
        assert status < 400 or content_type.startswith("application/problem+json"), (status, content_type)

    answers_with_4xx_at_worst()
