"""A webhook receiver as a process of its own (tests/reliability/test_webhook_processes.py):
`python webhook_receiver.py PORT LOG` answers every POST 200 and appends its webhook-id to LOG."""

import sys

from aiohttp import web


async def receive(request: web.Request) -> web.Response:
    await request.read()
    with open(sys.argv[2], "a") as log:
        log.write(request.headers["webhook-id"] + "\n")
    return web.Response(status=200)


if __name__ == "__main__":
    app = web.Application()
    app.router.add_post("/hook", receive)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
