"""Interop with the official Python SDK (centrifuge-python) and Centrifugo's Python API
client (`cent`), both pinned in requirements.txt, against a real wiresocket server; driven by
tests/interop_python.rs.

Env: WS_URL, API_URL, API_KEY, TOKEN (user alice), CHANNEL (a channel with history).
Checks, in order, and prints `ok: <step>` for each, then `ok: done`:
connect (client id, node); subscribe with recovery on; three publications made with `cent`
(publish, publish, broadcast) arrive in order with their offsets; history; presence and
presence stats include this client; `cent`'s info, channels, connections, presence_stats and
reverse history agree; a publish from the client reaches its own subscription; after a
client disconnect, two publications made meanwhile (a `cent` batch, and a publish with an
idempotency key sent twice) are recovered on reconnect (`recovered`), none twice; an invalid
token is refused with the terminal 3500.
Any failure raises (non-zero exit).
"""

import asyncio
import os
import sys

from cent import (
    BatchRequest,
    BroadcastRequest,
    ChannelsRequest,
    Client as ApiClient,
    ConnectionsRequest,
    HistoryRequest,
    InfoRequest,
    PresenceStatsRequest,
    PublishRequest,
)
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


API = ApiClient(f"{API_URL}/api", API_KEY)


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

    for n in (1, 2):
        assert API.publish(PublishRequest(channel=CHANNEL, data={"n": n})).offset == n
    sent = API.broadcast(BroadcastRequest(channels=[CHANNEL], data={"n": 3}))
    assert [r.result.offset for r in sent.responses] == [3], sent
    await expect_publications(sub_events, (1, 2, 3))
    ok("cent publish and broadcast arrive in order")

    history = await sub.history(limit=10)
    assert [p.data["n"] for p in history.publications] == [1, 2, 3], history
    assert history.offset == 3, history
    ok("history")

    presence = await sub.presence()
    assert connected.client in presence.clients, presence
    stats = await sub.presence_stats()
    assert stats.num_clients == 1 and stats.num_users == 1, stats
    ok("presence")

    nodes = API.info(InfoRequest()).nodes
    assert len(nodes) == 1 and nodes[0].num_clients >= 1, nodes
    channels = API.channels(ChannelsRequest(pattern=CHANNEL)).channels
    assert channels[CHANNEL].num_clients == 1, channels
    stats = API.presence_stats(PresenceStatsRequest(channel=CHANNEL))
    assert (stats.num_clients, stats.num_users) == (1, 1), stats
    conns = API.connections(ConnectionsRequest(user="alice", expression="")).connections
    assert connected.client in conns, conns
    last = API.history(HistoryRequest(channel=CHANNEL, limit=2, reverse=True))
    assert [p.data["n"] for p in last.publications] == [3, 2], last
    ok("cent info, channels, presence_stats, connections, reverse history")

    await sub.publish({"n": 4})
    await expect_publications(sub_events, (4,))
    ok("client publish")

    await client.disconnect()
    await next_of(events.disconnected, "disconnected")
    batch = API.batch(
        BatchRequest(requests=[PublishRequest(channel=CHANNEL, data={"n": 5})])
    )
    assert batch.replies[0].offset == 5, batch
    first = API.publish(PublishRequest(channel=CHANNEL, data={"n": 6}, idempotency_key="six"))
    again = API.publish(PublishRequest(channel=CHANNEL, data={"n": 6}, idempotency_key="six"))
    assert first.offset == again.offset == 6, (first, again)
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
