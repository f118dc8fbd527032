"""A WebSocket echo server for the benchmark's upstream: `python -m bench.echo PORT`."""

from __future__ import annotations

import sys

from aiohttp import WSMsgType, web


async def echo(request: web.Request) -> web.StreamResponse:
    ws = web.WebSocketResponse(max_msg_size=0)
    await ws.prepare(request)
    async for msg in ws:
        if msg.type is WSMsgType.TEXT:
            await ws.send_str(msg.data)
        elif msg.type is WSMsgType.BINARY:
            await ws.send_bytes(msg.data)
    return ws


def main() -> None:
    app = web.Application()
    app.router.add_get("/ws", echo)
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:
        loop = None
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None, loop=loop)


if __name__ == "__main__":
    main()
