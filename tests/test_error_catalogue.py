"""One error catalogue: sql/errors.sql defines every SQLSTATE of the project; service/errors.py,
the docs' error table and the OpenAPI responses must agree with it and with each other."""

import re

import yaml

from service import errors
from service.config import PROJECT_ROOT

from .doc_pages import page_with

SQL_DIR = PROJECT_ROOT / "sql"
ERRORS_SQL = (SQL_DIR / "errors.sql").read_text()
README = page_with("| SQLSTATE | meaning | HTTP | `type` |")  # the docs' error table, wherever it lives
OPENAPI = yaml.safe_load((PROJECT_ROOT / "service" / "openapi.yaml").read_text())

# "--   TA003  insufficient_tickets      not enough tickets left; ..." in the header of sql/errors.sql
CATALOGUE = dict(re.findall(r"^--\s+(TA\d{3})\s+(\w+)\s", ERRORS_SQL, re.M))
PROBLEM_TYPES = {
    value.slug: value for value in vars(errors).values() if isinstance(value, errors.ProblemType)
}


def constructor_body(name: str) -> str:
    match = re.search(rf"FUNCTION ticket_allocation\.{name}\(.*?\$\$(.*?)\$\$", ERRORS_SQL, re.S)
    assert match, f"sql/errors.sql has no constructor ticket_allocation.{name}"
    return match.group(1)


def test_each_code_has_one_constructor_that_builds_it():
    assert len(CATALOGUE) >= 8
    for code, constructor in CATALOGUE.items():
        assert f"'{code}'" in constructor_body(constructor), (code, constructor)
    literals = re.findall(r"'(TA\d{3})'", ERRORS_SQL)
    assert sorted(literals) == sorted(CATALOGUE), "a code built in sql/errors.sql but missing from its header"


def test_no_other_sql_file_builds_an_error_of_its_own():
    for path in SQL_DIR.rglob("*.sql"):
        if path.name != "errors.sql":
            assert not re.search(r"'TA\d{3}'|ERRCODE\s*=", path.read_text()), path


def test_the_service_maps_exactly_the_catalogued_codes():
    mapped = {code for code in errors.SQLSTATE_PROBLEMS if code.startswith("TA")}
    assert mapped == set(CATALOGUE)


def readme_error_rows() -> list[tuple[list[str], list[int], list[str]]]:
    """(SQLSTATEs, statuses, problem types) of each row of the README's error table."""
    table = README.split("| SQLSTATE |", 1)[1].split("\n\n", 1)[0]
    rows = []
    for line in table.splitlines()[2:]:
        codes_cell, _, status_cell, type_cell = [cell.strip() for cell in line.strip("|").split("|")]
        rows.append((
            re.findall(r"`(TA\d{3}|\w{5})`", codes_cell),
            [int(status) for status in re.findall(r"\b[1-5]\d\d\b", status_cell)],
            re.findall(r"/problems/[\w-]+", type_cell),
        ))
    return rows


def test_the_readme_table_agrees_with_the_service():
    documented_codes, documented_types = set(), set()
    for codes, statuses, types in readme_error_rows():
        for code in codes:
            problem = errors.problem_type_of(code)
            if problem is not None:
                assert problem.status in statuses and problem.uri in types, (code, statuses, types)
                documented_codes.add(code)
        if len(statuses) == len(types):  # e.g. "401 / 403" beside "/problems/unauthorized, /problems/forbidden"
            for status, problem_type in zip(statuses, types):
                assert PROBLEM_TYPES[problem_type.removeprefix("/problems/")].status == status, problem_type
        for problem_type in types:
            assert problem_type.removeprefix("/problems/") in PROBLEM_TYPES, problem_type
        documented_types.update(types)
    assert set(CATALOGUE) <= documented_codes
    assert set(errors.SQLSTATE_PROBLEMS) <= documented_codes
    assert {problem.uri for problem in PROBLEM_TYPES.values()} <= documented_types


def test_the_openapi_responses_agree_with_the_service():
    """Each problem type an OpenAPI response names is answered with that response's status."""
    statuses_of_response: dict[str, set[int]] = {}
    for path in OPENAPI["paths"].values():
        for operation in path.values():
            for status, response in operation.get("responses", {}).items():
                if "$ref" in response:
                    statuses_of_response.setdefault(response["$ref"].rsplit("/", 1)[1], set()).add(int(status))
    named = set()
    for name, response in OPENAPI["components"]["responses"].items():
        for problem_type in re.findall(r"/problems/([\w-]+)", response.get("description", "")):
            assert problem_type in PROBLEM_TYPES, (name, problem_type)
            assert statuses_of_response.get(name) == {PROBLEM_TYPES[problem_type].status}, (name, problem_type)
            named.add(problem_type)
    clients_problems = {slug for slug, problem in PROBLEM_TYPES.items() if problem.status < 500}
    assert clients_problems <= named
