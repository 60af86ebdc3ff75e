"""Every API test's responses are checked against the OpenAPI contract."""

import pytest

from service.app import create_app

from .contract import contract_middleware


@pytest.fixture
async def client(aiohttp_client, database_url):
    found: list[str] = []
    app = create_app(database_url)
    # Outermost, so it sees what clients see, problems included.
    app.middlewares.insert(0, contract_middleware(found))
    yield await aiohttp_client(app)
    assert found == [], "responses that break service/openapi.yaml"
