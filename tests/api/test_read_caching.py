"""GET /ticket_options/{id} under an on-sale storm: ETag, If-None-Match -> 304, Cache-Control."""

import re

import pytest

from service.config import DEFAULT_CACHE_CONTROL, Settings

from .helpers import advance_clock, buy, create_option, hold

STRONG_ETAG = re.compile(r'"[0-9a-f]{32}"')


async def read(client, option_id, if_none_match=None):
    headers = {"If-None-Match": if_none_match} if if_none_match is not None else {}
    response = await client.get(f"/ticket_options/{option_id}", headers=headers)
    return response, await response.read()


async def test_a_read_has_a_strong_etag_of_its_json_and_the_default_cache_control(client):
    option = await create_option(client, 10)
    first, body = await read(client, option["id"])
    assert first.status == 200 and STRONG_ETAG.fullmatch(first.headers["ETag"])
    assert first.headers["Cache-Control"] == DEFAULT_CACHE_CONTROL == "max-age=1"
    again, same_body = await read(client, option["id"])
    assert (again.headers["ETag"], same_body) == (first.headers["ETag"], body)  # unchanged: the same tag


async def test_if_none_match_naming_the_etag_is_304_without_a_body(client):
    option = await create_option(client, 10)
    etag = (await read(client, option["id"]))[0].headers["ETag"]
    for if_none_match in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        response, body = await read(client, option["id"], if_none_match)
        assert (response.status, body) == (304, b""), if_none_match
        assert response.headers["ETag"] == etag and response.headers["Cache-Control"] == DEFAULT_CACHE_CONTROL
    for if_none_match in ('"other"', etag[1:-1], "garbage, ,", '"' + "f" * 32 + '"'):  # names something else
        response, body = await read(client, option["id"], if_none_match)
        assert response.status == 200 and (await response.json())["id"] == option["id"], if_none_match


async def test_the_etag_changes_with_the_option_and_the_old_one_gets_the_new_body(client):
    option = await create_option(client, 10)
    before = (await read(client, option["id"]))[0].headers["ETag"]
    assert (await buy(client, option["id"], 2)).status == 201
    response, _ = await read(client, option["id"], before)
    assert response.status == 200 and response.headers["ETag"] != before
    assert (await response.json())["allocation"] == 8


async def test_the_etag_changes_when_a_hold_expires_though_nothing_is_written(client, database_url):
    option = await create_option(client, 10)
    assert (await hold(client, option["id"], 3, ttl_seconds=60)).status == 201
    held, _ = await read(client, option["id"])
    assert (await held.json())["allocation"] == 7
    await advance_clock(database_url, "60 seconds")  # expired by the SQL clock, nothing written
    expired, _ = await read(client, option["id"], held.headers["ETag"])
    assert expired.status == 200 and (await expired.json())["allocation"] == 10


async def test_an_unknown_option_is_404_whatever_if_none_match_says(client):
    response, _ = await read(client, "00000000-0000-4000-8000-00000000abcd", "*")
    assert response.status == 404


class TestConfigured:
    @pytest.fixture
    def cache_control(self):
        return "no-store"

    async def test_cache_control_is_the_configured_one(self, client):
        option = await create_option(client, 1)
        response, _ = await read(client, option["id"])
        assert response.headers["Cache-Control"] == "no-store" and STRONG_ETAG.fullmatch(response.headers["ETag"])


def test_cache_control_setting():
    assert Settings.from_env({}).cache_control == DEFAULT_CACHE_CONTROL
    assert Settings.from_env({"CACHE_CONTROL": "public, max-age=5"}).cache_control == "public, max-age=5"
    for bad in ("max-age=1\r\nSet-Cookie: x=1", " max-age=1", "max-age=1 ", "é", "x" * 201):
        with pytest.raises(SystemExit, match="CACHE_CONTROL"):
            Settings.from_env({"CACHE_CONTROL": bad})
