"""The demo's social side end to end: a replayed stream through the sandboxes fills listening and the inbox,
and a reply from the inbox goes out through its channel adapter to the local stand-in of the network."""

import re
import signal
import time
import urllib.request

import pytest
from test_cli_demo import Demo, free_port, request

pytestmark = pytest.mark.slow
WAIT = 150  # seconds: a limit for a loaded machine, not a measurement


def poll(check, what: str, demo: Demo):
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(1)
    pytest.fail(f"{what} did not happen in time:\n{demo.output[-4000:]}")


def test_the_demo_hears_the_replayed_stream_and_answers_through_the_sandbox(tmp_path):
    demo = Demo(tmp_path / "home", free_port())
    try:
        credentials = demo.wait_ready()
        base, key = credentials["url"], credentials["api_key"]
        console = re.search(r"Sandbox\s+(http://\S+)", demo.output)[1]

        def heard():
            status, page = request(f"{base}/api/v1/mentions?limit=500", key)
            assert status == 200, page
            networks = {m["network"] for m in page["data"]}
            languages = {m["language"] for m in page["data"]}
            return page["data"] if {"mastodon", "bluesky", "x", "rss", "email"} <= networks and \
                {"es", "en"} <= languages else None

        mentions = poll(heard, "mentions from every sandbox, in both languages", demo)
        assert {m["sentiment"] for m in mentions} >= {"negative", "positive"}

        def open_on(network):
            status, page = request(f"{base}/api/v1/conversations?status=open&network={network}", key)
            return page["data"] if status == 200 and page["data"] else None

        conversation = poll(lambda: open_on("mastodon"), "a Mastodon conversation in the inbox", demo)[0]
        status, reply = request(f"{base}/api/v1/conversations/{conversation['id']}/replies", key,
                                {"text": "Hola, os respondemos desde la prueba de la demo."})
        assert status == 201, reply

        def in_sandbox():
            with urllib.request.urlopen(console, timeout=10) as page:  # noqa: S310 - our local sandbox
                text = page.read().decode()
            return "os respondemos desde la prueba de la demo" in text

        poll(in_sandbox, "the reply reaching the Mastodon sandbox", demo)

        def sent():
            _, detail = request(f"{base}/api/v1/conversations/{conversation['id']}", key)
            outbound = [m for m in detail["messages"] if m["direction"] == "outbound"]
            return outbound and outbound[0]["delivery_status"] == "sent"

        poll(sent, "the reply's delivery recorded as sent", demo)
        assert demo.stop(signal.SIGINT) == 0, demo.output
    finally:
        demo.kill()
