"""Real SMTP servers in the test process (aiosmtpd), including ones that answer 4xx and 5xx on purpose.

Recipients choose the server's behaviour, so one server exercises every reply:
  tempfail@...  -> RCPT answered 450 (mailbox busy)       reject@...   -> RCPT answered 550 (no such user)
  datatemp@...  -> DATA answered 451 (try again later)    datafail@... -> DATA answered 554 (rejected)
Anything else is accepted and kept in `handler.messages` (envelope sender, recipients, raw bytes).
"""

import socket
import threading

from aiosmtpd.controller import Controller

from fakes import free_port


class RecordingHandler:
    def __init__(self) -> None:
        self.messages: list[dict] = []
        self.connections = 0

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        self.connections += 1
        session.host_name = hostname
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@", 1)[0].lower()
        if local == "tempfail":
            return "450 4.2.1 Mailbox busy, try again later"
        if local == "reject":
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        local = envelope.rcpt_tos[0].split("@", 1)[0].lower() if envelope.rcpt_tos else ""
        if local == "datatemp":
            return "451 4.3.0 Temporary local problem, try again"
        if local == "datafail":
            return "554 5.7.1 Message rejected as spam"
        self.messages.append({"mail_from": envelope.mail_from, "rcpt_tos": list(envelope.rcpt_tos),
                              "data": envelope.original_content or envelope.content})
        return "250 2.0.0 Message accepted for delivery"


class SmtpServer:
    """An aiosmtpd Controller on 127.0.0.1 and a free port."""

    def __init__(self) -> None:
        self.handler = RecordingHandler()
        self.port = free_port()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)

    def __enter__(self):
        self.controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self.controller.stop()


class SilentServer:
    """Accepts TCP connections and never says a word: an SMTP client waiting for the greeting times out."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.sock.close()
        for conn in self.accepted:
            conn.close()
