"""Local stand-ins for remote providers (Twilio, Mastodon) speaking their wire formats, and SMTP test servers."""

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class FakeHTTPServer:
    """A threaded http.server on 127.0.0.1 and a free port; subclasses give the handler class."""

    handler_class: type[BaseHTTPRequestHandler]

    def __init__(self) -> None:
        handler = type("Handler", (self.handler_class,), {"fake": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        # A client that gave up (a timeout test) leaves a broken pipe behind: expected, not worth a traceback.
        self.server.handle_error = lambda request, client_address: None
        # A short poll interval: shutdown() waits for the loop to notice, once per test.
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
