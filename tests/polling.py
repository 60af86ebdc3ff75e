"""Waiting for a condition the test can observe, instead of sleeping and hoping it holds by then."""

import asyncio
import inspect
import time

POLL_SECONDS = 0.02
# Only a hung system's bound, never part of what a test asserts: a slow machine just waits longer.
WAIT_SECONDS = 30


async def wait_until(condition, what: str, timeout: float = WAIT_SECONDS):
    """Calls condition() (a function or a coroutine function) until it returns something true, and returns
    that; fails, naming `what` it waited for, once `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"waited {timeout:g} s for {what}")
        await asyncio.sleep(POLL_SECONDS)
