"""GET /docs in a real browser: the contract rendered, with nothing loaded from the internet."""

import asyncio
import json
import shutil
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

from service.app import create_app

from ..apps import app_settings

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")

# A test that cannot run is a failure that says why (`make test-fast` leaves the `browser` marker out).
pytestmark = pytest.mark.browser


@pytest.fixture(autouse=True)
def chromium_installed():
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.fail("needs Debian's chromium and chromium-driver: apt-get install -y chromium chromium-driver")

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",  # Chromium refuses to start as root (CI runs as root) with its sandbox on.
    "--disable-gpu",
    # Chromium's own connections (updates, sync, field trials) would only fail where there is no internet.
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
TIMEOUT_SECONDS = 30

# The summaries Swagger UI renders, one per operation, as "METHOD /path".
LISTED_OPERATIONS_JS = """
return [...document.querySelectorAll('.opblock-summary')].map(summary =>
  summary.querySelector('.opblock-summary-method').innerText + ' ' +
  summary.querySelector('.opblock-summary-path').innerText);
"""


@dataclass
class RenderedPage:
    title: str
    operations: list[str]
    text: str
    requested_urls: list[str]


def requested_urls(driver) -> list[str]:
    # Chromium's own log of requests: it has the ones that failed too (as one to the internet
    # would here), which the page's resource timing entries may leave out.
    events = (json.loads(entry["message"])["message"] for entry in driver.get_log("performance"))
    return [event["params"]["request"]["url"] for event in events if event["method"] == "Network.requestWillBeSent"]


def render(url: str, expected_operations: set[str], user_data_dir) -> RenderedPage:
    """Opens `url` and waits, at most TIMEOUT_SECONDS, until it lists `expected_operations`."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={user_data_dir}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.set_page_load_timeout(TIMEOUT_SECONDS)
        driver.get(url)
        try:
            WebDriverWait(driver, TIMEOUT_SECONDS).until(
                lambda driver: expected_operations <= set(driver.execute_script(LISTED_OPERATIONS_JS))
            )
        except TimeoutException:
            pass  # the test's assertions show what the page has instead
        return RenderedPage(
            title=driver.title,
            operations=driver.execute_script(LISTED_OPERATIONS_JS),
            text=driver.execute_script("return document.body.innerText"),
            requested_urls=requested_urls(driver),
        )
    finally:
        driver.quit()


async def test_docs_page_renders_the_contract_from_this_server_alone(aiohttp_server, api_database_url, admin_database_url, tmp_path):
    server = await aiohttp_server(create_app(app_settings(api_database_url, admin_database_url)))
    expected = {"POST /ticket_options", "GET /ticket_options/{id}", "POST /ticket_options/{id}/purchases"}
    # The browser blocks, so it runs in a thread while this loop serves its requests.
    page = await asyncio.to_thread(render, str(server.make_url("/docs")), expected, tmp_path / "chromium-profile")

    assert page.title == "ticket-allocation"
    assert expected <= set(page.operations), f"the page lists {page.operations}; it reads:\n{page.text}"
    # Only http(s) and ws(s) requests reach a host: chrome:// and data: URLs are the browser's own
    # (its first, blank tab; images inlined in the CSS).
    to_hosts = [url for url in page.requested_urls if urlsplit(url).scheme in ("http", "https", "ws", "wss")]
    origin = str(server.make_url("/"))
    assert f"{origin}openapi.json" in to_hosts
    assert [url for url in to_hosts if not url.startswith(origin)] == []
