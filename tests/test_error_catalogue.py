"""One error catalogue: api.error_catalogue() (sql/errors.sql) is the only list of the project's
SQLSTATEs. Every other place is derived from it or checked against it here: the functions of sql/
build their errors from its rows, the service's map is read from it (service/errors.py Problems),
and the docs' error table and the OpenAPI responses must agree with that map."""

import re

import pytest
import yaml

from service import errors
from service.config import PROJECT_ROOT

SQL_DIR = PROJECT_ROOT / "sql"
OPENAPI = yaml.safe_load((PROJECT_ROOT / "service" / "openapi.yaml").read_text())
# The pages that may hold the error table: README.md today, the HTTP API page of docs/ once the README is split.
DOC_PAGES = [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").glob("*.md"))]


async def catalogue(conn) -> list:
    return await conn.fetch("SELECT * FROM api.error_catalogue()")


async def test_each_code_has_one_row_name_and_problem_type(conn):
    rows = await catalogue(conn)
    assert len(rows) >= 8
    for column in ("sqlstate", "name", "problem"):
        values = [row[column] for row in rows]
        assert len(values) == len(set(values)), f"two rows of the catalogue share a {column}"
    for row in rows:
        assert re.fullmatch(r"TA\d{3}", row["sqlstate"]), row["sqlstate"]
        assert 400 <= row["status"] <= 599 and row["title"] and row["message"], row["sqlstate"]
    own = {problem.slug for problem in errors.OWN_PROBLEMS}
    assert own.isdisjoint(row["problem"] for row in rows), "a catalogue row would shadow one of the service's own"


def refusal_names_used() -> dict[str, set[str]]:
    """{name: the files of sql/ that build it} for every refusal_of('<name>', ...) call."""
    used: dict[str, set[str]] = {}
    for path in SQL_DIR.rglob("*.sql"):
        for name in re.findall(r"\brefusal_of\('(\w+)'", path.read_text()):
            used.setdefault(name, set()).add(path.name)
    return used


async def test_sql_builds_every_error_from_a_catalogue_row_and_every_row_is_raised(conn):
    names = {row["name"] for row in await catalogue(conn)}
    used = refusal_names_used()
    assert set(used) <= names, "refusal_of names an error the catalogue lacks"
    assert names <= set(used), "a catalogue row that no function raises"


def test_no_sql_file_builds_an_error_of_its_own():
    """SQLSTATEs are written in the catalogue alone, and raised by raise_refusal alone."""
    for path in SQL_DIR.rglob("*.sql"):
        text = path.read_text()
        catalogue_rows = re.search(r"FUNCTION api\.error_catalogue\(\).*?\$\$(.*?)\$\$", text, re.S)
        outside = text.replace(catalogue_rows.group(1), "") if catalogue_rows else text
        assert not re.search(r"'TA\d{3}'", outside), path
        assert path.name == "errors.sql" or not re.search(r"ERRCODE\s*=", text), path


async def test_the_service_answers_each_code_as_its_row_says(conn):
    problems = await errors.read_problems(conn)
    for row in await catalogue(conn):
        assert problems.of(row["sqlstate"]) == errors.ProblemType(
            row["status"], row["problem"], row["title"], row["retry_after"]), row["sqlstate"]
    for name in errors.NAMED_FROM_THE_CATALOGUE:
        assert isinstance(problems.named(name), errors.ProblemType), name


def error_table() -> tuple[str, str]:
    """(page, table) of the docs' error table: the one whose header starts with SQLSTATE and lists TA001."""
    for page in DOC_PAGES:
        for table in re.findall(r"^\| SQLSTATE \|.*?(?=\n(?!\|))", page.read_text(), re.M | re.S):
            if "`TA001`" in table:
                return page.name, table
    raise AssertionError(f"no error table (| SQLSTATE | ... listing `TA001`) in {[p.name for p in DOC_PAGES]}")


def error_table_rows() -> list[tuple[list[str], list[int], bool, list[str]]]:
    """(SQLSTATEs, statuses, whether Retry-After is said, problem types) of each row of the docs' table."""
    header, _, *lines = error_table()[1].splitlines()
    columns = [cell.strip() for cell in header.strip("|").split("|")]
    codes_at, status_at, type_at = columns.index("SQLSTATE"), columns.index("HTTP"), columns.index("`type`")
    rows = []
    for line in lines:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows.append((
            re.findall(r"`(TA\d{3}|\w{5})`", cells[codes_at]),
            [int(status) for status in re.findall(r"\b[1-5]\d\d\b", cells[status_at])],
            "Retry-After" in cells[status_at],
            re.findall(r"/problems/[\w-]+", cells[type_at]),
        ))
    return rows


async def test_the_docs_table_agrees_with_the_catalogue(conn):
    problems = await errors.read_problems(conn)
    documented_codes, documented_types = set(), set()
    for codes, statuses, says_retry_after, types in error_table_rows():
        for code in codes:
            problem = problems.of(code)
            if problem is not None:
                assert problem.status in statuses and problem.uri in types, (code, statuses, types)
                assert says_retry_after == problem.retry_after, (code, "Retry-After")
                documented_codes.add(code)
        if len(statuses) == len(types):  # e.g. "401 / 403" beside "/problems/unauthorized, /problems/forbidden"
            for status, problem_type in zip(statuses, types):
                assert problems.named(problem_type.removeprefix("/problems/")).status == status, problem_type
        for problem_type in types:
            assert problems.named(problem_type.removeprefix("/problems/")), problem_type
        documented_types.update(types)
    assert {row["sqlstate"] for row in await catalogue(conn)} <= documented_codes, error_table()[0]
    assert set(errors.SQLSTATE_PROBLEMS) <= documented_codes
    assert {problem.uri for problem in problems.types.values()} <= documented_types


async def test_the_openapi_responses_agree_with_the_catalogue(conn):
    """Each problem type an OpenAPI response names is answered with that response's status (and its
    Retry-After, if the type has one); every client problem type is named by one."""
    problems = await errors.read_problems(conn)
    statuses_of_response: dict[str, set[int]] = {}
    for path in OPENAPI["paths"].values():
        for operation in path.values():
            for status, response in operation.get("responses", {}).items():
                if "$ref" in response:
                    statuses_of_response.setdefault(response["$ref"].rsplit("/", 1)[1], set()).add(int(status))
    named = set()
    for name, response in OPENAPI["components"]["responses"].items():
        for slug in re.findall(r"/problems/([\w-]+)", response.get("description", "")):
            problem = problems.named(slug)
            assert problem is not None, (name, slug)
            assert statuses_of_response.get(name) == {problem.status}, (name, slug)
            assert not problem.retry_after or "Retry-After" in response.get("headers", {}), (name, slug)
            named.add(slug)
    clients_problems = {slug for slug, problem in problems.types.items() if problem.status < 500}
    assert clients_problems <= named


async def test_a_database_without_the_catalogue_stops_the_service_with_its_fix(conn):
    await conn.execute("DROP FUNCTION api.error_catalogue()")
    with pytest.raises(SystemExit, match=r"not migrated by this version of the service; run `python -m service migrate`"):
        await errors.read_problems(conn)


async def test_a_catalogue_without_a_problem_the_service_names_stops_it(conn):
    rows = [row for row in await catalogue(conn) if row["problem"] != errors.ORDER_NOT_FOUND]
    with pytest.raises(SystemExit, match=r"lacks the problem types \['order-not-found'\]"):
        errors.Problems(rows)
