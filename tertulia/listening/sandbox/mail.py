"""A local IMAP4rev1 server (RFC 3501) over real TCP, enough for a mail client such as imaplib to read a mailbox.

It speaks the protocol itself, not a shortcut: a greeting, tagged commands, quoted strings and literals
(`{n}` with its "+" continuation, and LITERAL+), untagged responses, and the responses' own codes
([UIDVALIDITY], [UIDNEXT], [READ-ONLY], [AUTHENTICATIONFAILED]...). Commands: CAPABILITY, NOOP, LOGOUT,
LOGIN, LIST, SELECT, EXAMINE, CLOSE, SEARCH and FETCH, and their UID forms (UID SEARCH, UID FETCH), with
sequence sets ("1,4:7", "12:*", and RFC 3501's rule that "n:*" always includes the highest message) and
the FETCH items UID, FLAGS, INTERNALDATE, RFC822.SIZE, RFC822, RFC822.HEADER, BODY[], BODY.PEEK[],
BODY[HEADER], BODY[TEXT] and FAST. BODY[] and RFC822 set \\Seen in a mailbox opened read-write, as a real
server does; BODY.PEEK[] and EXAMINE never do. Plain TCP only (no STARTTLS advertised).

    with MailSandbox(accounts={"soporte@tienda.example": "secreto"}) as mail:
        uid = mail.add_message(raw_bytes_or_email_message)
        mail.renumber()  # a rebuilt mailbox: new UIDVALIDITY, UIDs from 1 again

`commands` keeps every command received (passwords hidden), for a test or a curious newcomer.
"""

import re
import socketserver
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import parsedate_to_datetime

CAPABILITIES = "IMAP4rev1 LITERAL+"
SYSTEM_FLAGS = r"(\Answered \Flagged \Deleted \Seen \Draft)"
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
MAX_LINE = 65536
MAX_LITERAL = 50 * 1024 * 1024


@dataclass
class StoredMessage:
    uid: int
    raw: bytes
    flags: set[str] = field(default_factory=set)
    internaldate: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))

    @property
    def header(self) -> bytes:
        end = self.raw.find(b"\r\n\r\n")
        return self.raw if end < 0 else self.raw[:end + 4]

    @property
    def text(self) -> bytes:
        end = self.raw.find(b"\r\n\r\n")
        return b"" if end < 0 else self.raw[end + 4:]


@dataclass
class Mailbox:
    name: str
    uidvalidity: int
    uidnext: int = 1
    messages: list[StoredMessage] = field(default_factory=list)


class ProtocolError(Exception):
    """A command we cannot parse: answered BAD."""


def internaldate(moment: datetime) -> str:
    moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    offset = moment.strftime("%z") or "+0000"
    return f"{moment.day:02d}-{MONTHS[moment.month - 1]}-{moment.year:04d} {moment:%H:%M:%S} {offset}"


def tokens(data: bytes) -> list:
    """An IMAP command's arguments: atoms (str), quoted strings and literals (str, or bytes for literals),
    parenthesised lists (list). Brackets stay part of their atom: BODY.PEEK[HEADER.FIELDS (FROM)]."""
    out: list = []
    stack: list[list] = [out]
    pos = 0
    while pos < len(data):
        char = data[pos:pos + 1]
        if char == b" ":
            pos += 1
        elif char == b"(":
            stack[-1].append([])
            stack.append(stack[-1][-1])
            pos += 1
        elif char == b")":
            if len(stack) == 1:
                raise ProtocolError("unbalanced parenthesis")
            stack.pop()
            pos += 1
        elif char == b'"':
            pos += 1
            value = bytearray()
            while True:
                if pos >= len(data):
                    raise ProtocolError("unterminated quoted string")
                current = data[pos:pos + 1]
                if current == b"\\":
                    value += data[pos + 1:pos + 2]
                    pos += 2
                elif current == b'"':
                    pos += 1
                    break
                else:
                    value += current
                    pos += 1
            stack[-1].append(value.decode("utf-8", "replace"))
        elif char == b"{":
            found = re.match(rb"\{(\d+)\+?\}\r\n", data[pos:])
            if not found:
                raise ProtocolError("bad literal")
            start = pos + found.end()
            size = int(found.group(1))
            stack[-1].append(data[start:start + size])
            pos = start + size
        else:
            end = pos
            depth = 0
            while end < len(data):
                current = data[end:end + 1]
                if current == b"[":
                    depth += 1
                elif current == b"]":
                    depth -= 1
                elif depth == 0 and current in (b" ", b"(", b")"):
                    break
                end += 1
            stack[-1].append(data[pos:end].decode("utf-8", "replace"))
            pos = end
    if len(stack) != 1:
        raise ProtocolError("unbalanced parenthesis")
    return out


def sequence_numbers(spec: str, values: list[int]) -> set[int]:
    """The members of `values` (sorted UIDs or 1..n) that an IMAP sequence set names; "*" is the largest."""
    if not values:
        return set()
    largest = values[-1]
    chosen: set[int] = set()
    for part in spec.split(","):
        low, sep, high = part.partition(":")
        try:
            first = largest if low == "*" else int(low)
            last = (largest if high == "*" else int(high)) if sep else first
        except ValueError:
            raise ProtocolError(f"bad sequence set {spec!r}") from None
        low_, high_ = min(first, last), max(first, last)  # "7:3" is "3:7"; "n:*" with n > max is "max:n"
        chosen.update(value for value in values if low_ <= value <= high_)
    return chosen


class ImapHandler(socketserver.StreamRequestHandler):
    sandbox: "MailSandbox"
    timeout = 120

    def setup(self) -> None:
        super().setup()
        self.user = ""
        self.selected: Mailbox | None = None
        self.readonly = False

    def send(self, line: bytes | str) -> None:
        self.wfile.write((line.encode() if isinstance(line, str) else line) + b"\r\n")

    def read_command(self) -> bytes | None:
        line = self.rfile.readline(MAX_LINE)
        if not line:
            return None
        data = line
        while True:
            found = re.search(rb"\{(\d+)(\+?)\}\r\n$", data)
            if not found:
                break
            size = int(found.group(1))
            if size > MAX_LITERAL:
                raise ProtocolError("literal too large")
            if not found.group(2):
                self.send("+ Ready for literal data")
                self.wfile.flush()
            data += self.rfile.read(size)
            more = self.rfile.readline(MAX_LINE)
            if not more:
                return None
            data += more
        return data.rstrip(b"\r\n")

    def handle(self) -> None:
        self.send(f"* OK [CAPABILITY {CAPABILITIES}] Tertulia sandbox IMAP4rev1 ready")
        while True:
            try:
                data = self.read_command()
            except (ProtocolError, OSError):
                return
            if data is None:
                return
            tag, _, rest = data.partition(b" ")
            tag_text = tag.decode("ascii", "replace") or "*"
            try:
                words = tokens(rest)
                if not words or not isinstance(words[0], str):
                    raise ProtocolError("no command")
                command = words[0].upper()
                self.sandbox.record(command, words[1:])
                if not self.dispatch(tag_text, command, words[1:]):
                    return
            except ProtocolError as exc:
                self.send(f"{tag_text} BAD {exc}")
            self.wfile.flush()

    def dispatch(self, tag: str, command: str, args: list) -> bool:
        authenticated = bool(self.user)
        if command == "CAPABILITY":
            self.send(f"* CAPABILITY {CAPABILITIES}")
            self.send(f"{tag} OK CAPABILITY completed")
        elif command == "NOOP":
            self.send(f"{tag} OK NOOP completed")
        elif command == "LOGOUT":
            self.send("* BYE Tertulia sandbox logging out")
            self.send(f"{tag} OK LOGOUT completed")
            self.wfile.flush()
            return False
        elif command == "LOGIN":
            if authenticated:
                self.send(f"{tag} BAD Already authenticated")
            elif len(args) != 2:
                raise ProtocolError("LOGIN takes a user name and a password")
            elif self.sandbox.check_login(_text(args[0]), _text(args[1])):
                self.user = _text(args[0])
                self.send(f"{tag} OK [CAPABILITY {CAPABILITIES}] LOGIN completed")
            else:
                self.send(f"{tag} NO [AUTHENTICATIONFAILED] Invalid credentials")
        elif not authenticated:
            self.send(f"{tag} BAD Command not allowed before LOGIN")
        elif command == "LIST":
            for name in self.sandbox.mailbox_names():
                self.send(f'* LIST (\\HasNoChildren) "/" "{name}"')
            self.send(f"{tag} OK LIST completed")
        elif command in ("SELECT", "EXAMINE"):
            self.open(tag, command, args)
        elif command in ("CLOSE", "UNSELECT"):
            self.selected = None
            self.send(f"{tag} OK {command} completed")
        elif self.selected is None:
            self.send(f"{tag} BAD No mailbox selected")
        elif command == "SEARCH":
            self.search(tag, args, uid=False)
        elif command == "FETCH":
            self.fetch(tag, args, uid=False)
        elif command == "UID" and args and isinstance(args[0], str) and args[0].upper() in ("SEARCH", "FETCH"):
            if args[0].upper() == "SEARCH":
                self.search(tag, args[1:], uid=True)
            else:
                self.fetch(tag, args[1:], uid=True)
        else:
            self.send(f"{tag} BAD Unknown or unsupported command {command}")
        return True

    def open(self, tag: str, command: str, args: list) -> None:
        if len(args) != 1:
            raise ProtocolError(f"{command} takes a mailbox name")
        with self.sandbox.lock:
            mailbox = self.sandbox.mailbox(_text(args[0]))
            if mailbox is None:
                self.selected = None
                self.send(f"{tag} NO [NONEXISTENT] Unknown mailbox")
                return
            self.selected, self.readonly = mailbox, command == "EXAMINE"
            self.send(f"* FLAGS {SYSTEM_FLAGS}")
            self.send("* OK [PERMANENTFLAGS ()] Read-only mailbox" if self.readonly
                      else f"* OK [PERMANENTFLAGS {SYSTEM_FLAGS[:-1]} \\*)] Flags permitted")
            self.send(f"* {len(mailbox.messages)} EXISTS")
            self.send("* 0 RECENT")
            self.send(f"* OK [UIDVALIDITY {mailbox.uidvalidity}] UIDs valid")
            self.send(f"* OK [UIDNEXT {mailbox.uidnext}] Predicted next UID")
            mode = "READ-ONLY" if self.readonly else "READ-WRITE"
            self.send(f"{tag} OK [{mode}] {command} completed")

    def _matches(self, criteria: list, messages: list[StoredMessage]) -> set[int]:
        """Indexes (0-based) of the messages matching every criterion."""
        chosen = set(range(len(messages)))
        uids = [message.uid for message in messages]
        position = 0
        while position < len(criteria):
            key = criteria[position]
            if isinstance(key, list):
                chosen &= self._matches(key, messages)
                position += 1
                continue
            word = _text(key).upper()
            if word == "ALL":
                pass
            elif word == "UID" and position + 1 < len(criteria):
                wanted = sequence_numbers(_text(criteria[position + 1]), uids)
                chosen &= {index for index, uid in enumerate(uids) if uid in wanted}
                position += 1
            elif word in ("SEEN", "UNSEEN"):
                chosen &= {index for index, message in enumerate(messages)
                           if ("\\Seen" in message.flags) == (word == "SEEN")}
            elif word == "SINCE" and position + 1 < len(criteria):
                try:
                    day = datetime.strptime(_text(criteria[position + 1]), "%d-%b-%Y").replace(tzinfo=UTC).date()
                except ValueError:
                    raise ProtocolError("bad date") from None
                chosen &= {index for index, message in enumerate(messages) if message.internaldate.date() >= day}
                position += 1
            elif re.fullmatch(r"[\d:*,]+", word):
                wanted = sequence_numbers(word, list(range(1, len(messages) + 1)))
                chosen &= {number - 1 for number in wanted}
            else:
                raise ProtocolError(f"unsupported search key {word}")
            position += 1
        return chosen

    def search(self, tag: str, args: list, *, uid: bool) -> None:
        if args and _text(args[0]).upper() == "CHARSET":
            args = args[2:]
        with self.sandbox.lock:
            messages = list(self.selected.messages)
        found = sorted(self._matches(args or ["ALL"], messages))
        numbers = [messages[index].uid if uid else index + 1 for index in found]
        self.send("* SEARCH" + "".join(f" {number}" for number in numbers))
        self.send(f"{tag} OK {'UID ' if uid else ''}SEARCH completed")

    def fetch(self, tag: str, args: list, *, uid: bool) -> None:
        if len(args) != 2:
            raise ProtocolError("FETCH takes a sequence set and data items")
        items = args[1] if isinstance(args[1], list) else [args[1]]
        names = [_text(item).upper() for item in items]
        if names == ["FAST"]:
            names = ["FLAGS", "INTERNALDATE", "RFC822.SIZE"]
        if uid and "UID" not in names:
            names.insert(0, "UID")
        for name in names:
            if name not in FETCH_ITEMS:
                raise ProtocolError(f"unsupported FETCH item {name}")
        with self.sandbox.lock:
            messages = list(self.selected.messages)
            values = [m.uid for m in messages] if uid else list(range(1, len(messages) + 1))
            wanted = sequence_numbers(_text(args[0]), values)
            for number, message in enumerate(messages, start=1):
                if (message.uid if uid else number) not in wanted:
                    continue
                parts: list[bytes] = []
                marks_seen = not self.readonly and any(name in SEEN_ITEMS for name in names)
                if marks_seen and "\\Seen" not in message.flags:
                    message.flags.add("\\Seen")
                    if "FLAGS" not in names:
                        names = [*names, "FLAGS"]
                for name in names:
                    parts.append(_fetch_item(name, message))
                self.wfile.write(f"* {number} FETCH (".encode() + b" ".join(parts) + b")\r\n")
        self.send(f"{tag} OK {'UID ' if uid else ''}FETCH completed")


FETCH_ITEMS = ("UID", "FLAGS", "INTERNALDATE", "RFC822.SIZE", "RFC822", "RFC822.HEADER", "RFC822.TEXT",
               "BODY[]", "BODY.PEEK[]", "BODY[HEADER]", "BODY.PEEK[HEADER]", "BODY[TEXT]", "BODY.PEEK[TEXT]")


# What sets \Seen when read (RFC 3501 6.4.5); the .PEEK forms and RFC822.HEADER never do.
SEEN_ITEMS = ("RFC822", "RFC822.TEXT", "BODY[]", "BODY[HEADER]", "BODY[TEXT]")


def _literal(data: bytes) -> bytes:
    return b"{%d}\r\n" % len(data) + data


def _fetch_item(name: str, message: StoredMessage) -> bytes:
    if name == "UID":
        return b"UID %d" % message.uid
    if name == "FLAGS":
        return ("FLAGS (" + " ".join(sorted(message.flags)) + ")").encode()
    if name == "INTERNALDATE":
        return f'INTERNALDATE "{internaldate(message.internaldate)}"'.encode()
    if name == "RFC822.SIZE":
        return b"RFC822.SIZE %d" % len(message.raw)
    section = name.replace(".PEEK", "")
    data = {"RFC822": message.raw, "BODY[]": message.raw, "RFC822.HEADER": message.header,
            "BODY[HEADER]": message.header, "RFC822.TEXT": message.text, "BODY[TEXT]": message.text}[section]
    return section.encode() + b" " + _literal(data)


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address) -> None:  # a client that hung up: expected
        pass


class MailSandbox:
    """The IMAP server and its mailboxes; a context manager, or start()/stop()."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, accounts: dict[str, str] | None = None,
                 mailboxes: tuple[str, ...] = ("INBOX",)) -> None:
        self.accounts = dict(accounts or {"soporte@tienda.example": "sandbox"})
        self.lock = threading.RLock()
        self._validity = int(time.time())
        self.mailboxes = {name: Mailbox(name=name, uidvalidity=self._next_validity()) for name in mailboxes}
        self.commands: list[str] = []
        self.failed_logins = 0
        handler = type("Handler", (ImapHandler,), {"sandbox": self})
        self.server = _Server((host, port), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True,
                                       name="sandbox-MailSandbox")

    @property
    def host(self) -> str:
        return self.server.server_address[0]

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def start(self) -> "MailSandbox":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> "MailSandbox":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _next_validity(self) -> int:
        self._validity += 1
        return self._validity

    def record(self, command: str, args: list) -> None:
        shown = [_text(args[0]), "***"] if command == "LOGIN" and args else \
            [_text(a) if not isinstance(a, list) else "(" + " ".join(_text(x) for x in a) + ")" for a in args]
        with self.lock:
            self.commands.append(" ".join([command, *shown]))

    def check_login(self, user: str, password: str) -> bool:
        with self.lock:
            ok = user in self.accounts and self.accounts[user] == password
            self.failed_logins += 0 if ok else 1
            return ok

    def mailbox_names(self) -> list[str]:
        with self.lock:
            return sorted(self.mailboxes)

    def mailbox(self, name: str) -> Mailbox | None:
        key = "INBOX" if name.upper() == "INBOX" else name  # INBOX is case-insensitive (RFC 3501 5.1)
        return self.mailboxes.get(key)

    def add_message(self, message: bytes | EmailMessage, *, mailbox: str = "INBOX", flags: tuple[str, ...] = (),
                    internal_date: datetime | None = None) -> int:
        """Deliver a message (raw bytes, LF or CRLF, or an EmailMessage); returns its UID."""
        raw = message.as_bytes() if isinstance(message, EmailMessage) else bytes(message)
        raw = re.sub(rb"\r?\n", b"\r\n", raw)  # a mail store keeps network line ends
        with self.lock:
            box = self.mailboxes[mailbox]
            uid = box.uidnext
            box.uidnext += 1
            moment = internal_date or _date_of(raw) or datetime.now(UTC).replace(microsecond=0)
            box.messages.append(StoredMessage(uid=uid, raw=raw, flags=set(flags), internaldate=moment))
            return uid

    def expunge(self, uid: int, *, mailbox: str = "INBOX") -> None:
        with self.lock:
            box = self.mailboxes[mailbox]
            box.messages = [message for message in box.messages if message.uid != uid]

    def renumber(self, *, mailbox: str = "INBOX") -> int:
        """Rebuild the mailbox as servers sometimes do: a new UIDVALIDITY, UIDs from 1 again; returns it."""
        with self.lock:
            box = self.mailboxes[mailbox]
            box.uidvalidity = self._next_validity()
            for uid, message in enumerate(box.messages, start=1):
                message.uid = uid
            box.uidnext = len(box.messages) + 1
            return box.uidvalidity

    def flags(self, uid: int, *, mailbox: str = "INBOX") -> set[str]:
        with self.lock:
            return next(set(m.flags) for m in self.mailboxes[mailbox].messages if m.uid == uid)


def _date_of(raw: bytes) -> datetime | None:
    found = re.search(rb"(?im)^Date:[ \t]*(.+(?:\r\n[ \t].*)*)", raw.split(b"\r\n\r\n", 1)[0])
    if not found:
        return None
    try:
        moment = parsedate_to_datetime(re.sub(rb"\r\n[ \t]+", b" ", found.group(1)).decode("ascii", "replace"))
    except (TypeError, ValueError, IndexError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
