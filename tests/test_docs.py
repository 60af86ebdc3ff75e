"""README.md and docs/ say what the code holds: the README stays short; its routes' table names where each
rule lives; the tables of docs/ are the contract's routes, sql/privileges.sql's grants, the schema's
order statuses and api types, the served metrics and CI's packages; every make target and command line
shown exists; every link between pages, and its heading, resolves."""

import re

import pytest
import yaml

from service.__main__ import main
from service.config import PROJECT_ROOT
from service.metrics import Metrics

from .doc_pages import page, page_names, page_with

README_MAX_LINES = 300  # the newcomer's page; the reference lives in docs/


def test_the_readme_stays_short():
    assert len(page("README.md").splitlines()) <= README_MAX_LINES


def documented_privileges() -> dict[str, set[str]]:
    """{function: roles} of the table under `| function of `api` | who may EXECUTE it |`."""
    table = page_with("| function of `api` | who may EXECUTE it |").split("| who may EXECUTE it |", 1)[1]
    rows = re.findall(r"^\| `(\w+)` \| (.*) \|$", table.split("\n\n", 1)[0], re.M)
    return {function: set(re.findall(r"`(\w+)`", roles)) for function, roles in rows}


def granted_privileges() -> dict[str, set[str]]:
    sql = (PROJECT_ROOT / "sql" / "privileges.sql").read_text()
    grants = re.findall(r"^GRANT EXECUTE ON FUNCTION api\.(\w+) TO ([\w, ]+);", sql, re.M)
    return {function: {role.strip() for role in roles.split(",")} for function, roles in grants}


def test_the_privilege_table_is_sql_privileges():
    granted = granted_privileges()
    assert len(granted) >= 30  # the parse found the GRANT lines
    assert documented_privileges() == granted


def makefile_targets() -> set[str]:
    return set(re.findall(r"^([\w.-]+):", (PROJECT_ROOT / "Makefile").read_text(), re.M))


def named_make_targets(text: str) -> set[str]:
    """`make X` in inline code, and `make X` commands at the start of a line of a code block."""
    inline = re.findall(r"`make ([a-z][\w-]*)", text)
    in_blocks = [target for block in re.findall(r"```\w*\n(.*?)```", text, re.S)
                 for target in re.findall(r"^make ([a-z][\w-]*)", block, re.M)]
    return {*inline, *in_blocks}


def test_every_make_command_shown_is_a_target():
    named = {target for name in page_names() for target in named_make_targets(page(name))}
    assert {"run", "test", "test-fast", "psql", "bench"} <= named
    assert named <= makefile_targets(), named - makefile_targets()


def heading_anchors(text: str) -> set[str]:
    """The anchors GitHub gives a page's headings: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
            for heading in re.findall(r"^#{1,6} (.+)$", text, re.M)}


def test_every_link_between_pages_resolves():
    links = 0
    for name in page_names():
        folder = (PROJECT_ROOT / name).parent
        for target, anchor in re.findall(r"\]\((?!https?:)([^)#\s]*)(?:#([^)\s]+))?\)", page(name)):
            path = (folder / target).resolve() if target else PROJECT_ROOT / name
            assert path.exists(), (name, target)
            if anchor:
                assert anchor in heading_anchors(path.read_text()), (name, target, anchor)
            links += 1
    assert links >= 20


def route_rows() -> list[tuple[str, str, list[str], str, str]]:
    """(method, path, handler modules, SQL function, SQL file) of the README's table of routes."""
    table = page("README.md").split("| route | handler in | SQL function | in |", 1)[1].split("\n\n", 1)[0]
    rows = []
    for line in table.splitlines()[2:]:
        route, modules, function, sql_file = [cell.strip() for cell in line.strip("|").split("|")]
        method, path = route.strip("`").split(" ", 1)
        rows.append((method, path, re.findall(r"`([\w/.]+)`", modules), function.strip("`"), sql_file.strip("`")))
    return rows


def test_the_readme_route_table_names_where_each_rule_lives():
    rows = route_rows()
    assert len(rows) >= 20
    for method, path, modules, function, sql_file in rows:
        sources = [(PROJECT_ROOT / module).read_text() for module in modules]
        assert f'@routes.{method.lower()}("{path}"' in sources[0], (method, path, modules[0])
        assert any(function.removeprefix("api.") in source for source in sources), (function, modules)
        assert re.search(rf"FUNCTION {re.escape(function)}\(", (PROJECT_ROOT / sql_file).read_text()), (function, sql_file)


def documented_order_statuses() -> set[str]:
    """The statuses of the orders' table of states (first column of the `| status | how it got there | moves |` rows)."""
    table = page_with("| status | how it got there | moves |").split("| moves |", 1)[1].split("\n\n", 1)[0]
    return {status for line in table.splitlines()[2:] for status in re.findall(r"`(\w+)`", line.split("|")[1])}


async def test_the_order_states_table_has_every_status_the_schema_allows(conn):
    definition = await conn.fetchval(
        """SELECT pg_get_constraintdef(oid) FROM pg_constraint
           WHERE conrelid = 'ticket_allocation.orders'::regclass AND conname = 'orders_status_known'""")
    assert documented_order_statuses() == set(re.findall(r"'(\w+)'::text", definition))


async def test_the_sql_api_page_lists_every_type_of_schema_api(conn):
    """docs/sql-api.md says what schema api holds: its functions and these types, nothing else."""
    text = page("docs/sql-api.md")
    listed = text.split("its functions and the types they take and return (", 1)[1].split("), nothing else", 1)[0]
    types = await conn.fetch(
        """SELECT format('api.%I', t.typname) AS name FROM pg_type t
           WHERE t.typnamespace = 'api'::regnamespace AND t.typtype = 'c'
             AND NOT EXISTS (SELECT FROM pg_class c WHERE c.oid = t.typrelid AND c.relkind <> 'c')""")
    assert set(re.findall(r"`(api\.[\w\"]+)`", listed)) == {row["name"] for row in types}


def documented_metrics() -> set[str]:
    """The series of the operations' metrics table and of the webhooks' `Metrics:` line, `{labels}` dropped."""
    table = page_with("| metric | labels | meaning |").split("| metric | labels | meaning |", 1)[1].split("\n\n", 1)[0]
    names = {name for line in table.splitlines()[2:] for name in re.findall(r"`(ticket_allocation_\w+)`", line.split("|")[1])}
    webhook_line = page("docs/events-and-webhooks.md").split("\nMetrics: ", 1)[1].split("\n\n", 1)[0]
    return names | set(re.findall(r"`(ticket_allocation_\w+)(?:\{\w+\})?`", webhook_line))


def test_the_metrics_documented_are_the_ones_served():
    exposed = {family.name + ("_total" if family.type == "counter" else "")
               for family in Metrics("1").registry.collect()}
    assert len(exposed) >= 15
    assert documented_metrics() == exposed


OPENAPI = yaml.safe_load((PROJECT_ROOT / "service" / "openapi.yaml").read_text())
METHODS = ("get", "post", "patch", "put", "delete")
PARSER_STATUS = 400  # any route, when the request is not valid HTTP/1.1; the contract lists it on some only


def documented_routes() -> dict[tuple[str, str], tuple[set[int], bool]]:
    """{(method, path): (statuses, admin)} of the HTTP API's table of routes."""
    table = page_with("| route | success | errors |").split("| route | success | errors |", 1)[1].split("\n\n", 1)[0]
    routes = {}
    for line in table.splitlines()[2:]:
        route, success, failure = [cell.strip() for cell in line.strip("|").split("|")]
        method, path = re.match(r"`([A-Z]+) (/\S*?)`", route).groups()
        statuses = {int(status) for status in re.findall(r"\b[1-5]\d\d\b", re.sub(r"\[.*?\]\(.*?\)", "", success + " " + failure))}
        routes[(method.lower(), path)] = (statuses, "(admin)" in route)
    return routes


def test_the_route_table_is_the_contract():
    documented = documented_routes()
    operations = {(method, path): operation for path, item in OPENAPI["paths"].items()
                  for method, operation in item.items() if method in METHODS}
    assert set(documented) == set(operations)
    for key, (statuses, admin) in documented.items():
        responses = {int(code) for code in operations[key]["responses"] if code.isdigit()}
        assert statuses - {PARSER_STATUS} == responses - {PARSER_STATUS}, key
        admin_only = any("adminToken" in requirement for requirement in operations[key].get("security", []))
        assert admin == admin_only, key


def test_the_packages_the_tests_need_are_those_ci_installs():
    """docs/testing.md's table of tools names exactly the Debian packages .ci/system-packages installs."""
    script = (PROJECT_ROOT / ".ci" / "system-packages").read_text()
    installed = {package for group in re.findall(r"missing\+=\(([^)]*)\)", script) for package in group.split()}
    table = page("docs/testing.md").split("| tool | for | Debian packages |", 1)[1].split("\n\n", 1)[0]
    named = {package for line in table.splitlines()[2:] for package in re.findall(r"`([\w.-]+)`", line.split("|")[3])}
    assert len(installed) >= 5
    assert named == installed


def test_every_command_line_shown_is_the_cli(capsys):
    """`python -m service X --opt` and `ticket-allocation X` in the docs: X is a command, --opt one of its options."""
    shown = {(command, tuple(options.split())) for name in page_names()
             for command, options in re.findall(r"(?:-m service|ticket-allocation) ([a-z]+)((?: --[a-z-]+)*)", page(name))}
    assert ("psql", ("--admin",)) in shown
    for command, options in shown:
        with pytest.raises(SystemExit) as exit:
            main([command, "--help"])
        assert exit.value.code == 0, command
        help_text = capsys.readouterr().out
        assert help_text.startswith(f"usage: python -m service {command}"), command
        for option in options:
            assert re.search(rf"(?<![\w-]){option}\b", help_text), (command, option)
