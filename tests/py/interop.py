"""Interop with the official Python SDK (centrifuge-python, pinned in requirements.txt)
against a real wiresocket server; driven by tests/interop_python.rs.

Env: WS_URL, API_URL, API_KEY, TOKEN (user alice), CHANNEL (a channel with history).
Checks, in order, and prints `ok: <step>` for each, then `ok: done`:
connect (client id, node); subscribe with recovery on; three publications made with the
HTTP API arrive in order with their offsets; history; presence and presence stats
include this client; a publish from the client reaches its own subscription; after a
client disconnect, two publications made meanwhile are recovered on reconnect
(`recovered`), none twice; an invalid token is refused with the terminal 3500.
Any failure raises (non-zero exit).
"""

import asyncio
import json
import os
import sys
import urllib.request

from centrifuge import (
    Client,
    ClientEventHandler,
    SubscriptionEventHandler,
)

WS_URL = os.environ["WS_URL"]
API_URL = os.environ["API_URL"]
API_KEY = os.environ["API_KEY"]
TOKEN = os.environ["TOKEN"]
CHANNEL = os.environ["CHANNEL"]
TIMEOUT = 10.0


def ok(step):
    print(f"ok: {step}", flush=True)


def api(method, body):
    req = urllib.request.Request(
        f"{API_URL}/api/{method}",
        data=json.dumps(body).encode(),
        headers={"X-API-Key": API_KEY, "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=TIMEOUT) as r:
        out = json.loads(r.read())
    assert "error" not in out, out
    return out.get("result", {})


class Events(ClientEventHandler):
    def __init__(self):
        self.connected = asyncio.Queue()
        self.disconnected = asyncio.Queue()

    async def on_connected(self, ctx):
        await self.connected.put(ctx)

    async def on_disconnected(self, ctx):
        await self.disconnected.put(ctx)


class SubEvents(SubscriptionEventHandler):
    def __init__(self):
        self.subscribed = asyncio.Queue()
        self.publications = asyncio.Queue()

    async def on_subscribed(self, ctx):
        await self.subscribed.put(ctx)

    async def on_publication(self, ctx):
        await self.publications.put(ctx.pub)


async def next_of(queue, what):
    try:
        return await asyncio.wait_for(queue.get(), TIMEOUT)
    except asyncio.TimeoutError:
        raise AssertionError(f"timed out waiting for {what}")


async def expect_publications(sub_events, numbers):
    for n in numbers:
        pub = await next_of(sub_events.publications, f"publication {n}")
        assert pub.data == {"n": n}, (pub.data, n)
        assert pub.offset == n, (pub.offset, n)


async def main():
    events = Events()
    client = Client(WS_URL, events=events, token=TOKEN)
    await client.connect()
    connected = await next_of(events.connected, "connected")
    assert connected.client, connected
    ok(f"connect client={connected.client}")

    sub_events = SubEvents()
    sub = client.new_subscription(CHANNEL, events=sub_events, recoverable=True, positioned=True)
    await sub.subscribe()
    subscribed = await next_of(sub_events.subscribed, "subscribed")
    assert subscribed.recoverable, subscribed
    ok("subscribe")

    for n in (1, 2, 3):
        assert api("publish", {"channel": CHANNEL, "data": {"n": n}})["offset"] == n
    await expect_publications(sub_events, (1, 2, 3))
    ok("publications from the API in order")

    history = await sub.history(limit=10)
    assert [p.data["n"] for p in history.publications] == [1, 2, 3], history
    assert history.offset == 3, history
    ok("history")

    presence = await sub.presence()
    assert connected.client in presence.clients, presence
    stats = await sub.presence_stats()
    assert stats.num_clients == 1 and stats.num_users == 1, stats
    ok("presence")

    await sub.publish({"n": 4})
    await expect_publications(sub_events, (4,))
    ok("client publish")

    await client.disconnect()
    await next_of(events.disconnected, "disconnected")
    for n in (5, 6):
        api("publish", {"channel": CHANNEL, "data": {"n": n}})
    await client.connect()
    await next_of(events.connected, "reconnected")
    resubscribed = await next_of(sub_events.subscribed, "resubscribed")
    assert resubscribed.was_recovering and resubscribed.recovered, resubscribed
    await expect_publications(sub_events, (5, 6))
    assert sub_events.publications.empty(), "a publication twice"
    ok("recovery after a disconnect")
    await client.disconnect()

    bad_events = Events()
    bad = Client(WS_URL, events=bad_events, token="not-a-jwt")
    try:
        await bad.connect()
    except Exception:
        pass
    gone = await next_of(bad_events.disconnected, "disconnected with a bad token")
    assert gone.code == 3500, gone
    ok("bad token refused with 3500")
    await bad.disconnect()
    ok("done")


if __name__ == "__main__":
    try:
        asyncio.run(asyncio.wait_for(main(), 60))
    except Exception as e:  # noqa: BLE001 - any failure fails the test
        print(f"FAILED: {e!r}", flush=True)
        sys.exit(1)
