"""Every API test's responses are checked against the OpenAPI contract."""

import pytest

from service.app import create_app
from service.config import DEFAULT_CACHE_CONTROL, WebhookSettings

from ..apps import DEFAULTS, app_settings
from .contract import contract_middleware


@pytest.fixture
def database_settings() -> dict[str, str]:
    """PostgreSQL settings for the app's connections; a test module may override it."""
    return {}


@pytest.fixture
def admin_token() -> str | None:
    """The app's ADMIN_TOKEN; None (admin routes open) unless a test module overrides it."""
    return None


@pytest.fixture
def api_tokens() -> tuple[str, ...]:
    """The app's API_TOKENS; none (API routes open) unless a test module overrides it."""
    return ()


@pytest.fixture
def body_read_timeout() -> float:
    """The app's BODY_READ_TIMEOUT_MS in seconds; the default unless a test module overrides it."""
    return DEFAULTS.body_read_timeout


@pytest.fixture
def webhook_settings() -> WebhookSettings:
    """The app's webhook delivery settings; no delivery unless a test module overrides it."""
    return WebhookSettings(enabled=False)


@pytest.fixture
def cache_control() -> str:
    """The app's Cache-Control of cacheable reads; the default unless a test module overrides it."""
    return DEFAULT_CACHE_CONTROL


@pytest.fixture
async def client(aiohttp_client, api_database_url, admin_database_url, database_settings, admin_token, api_tokens,
                 body_read_timeout, webhook_settings, cache_control):
    found: list[str] = []
    app = create_app(app_settings(
        api_database_url, admin_database_url, database_settings=database_settings, admin_token=admin_token,
        api_tokens=api_tokens, body_read_timeout=body_read_timeout, webhooks=webhook_settings, cache_control=cache_control,
    ))
    # Outermost, so it sees what clients see, problems included.
    app.middlewares.insert(0, contract_middleware(found))
    yield await aiohttp_client(app)
    assert found == [], "responses that break service/openapi.yaml"
