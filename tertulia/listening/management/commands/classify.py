"""`tertulia classify`: JSON lines {"id", "text"} on stdin -> JSON lines with language, sentiment, intent, toxicity on stdout.

One output line per non-blank input line, in the same order. A line that cannot be classified gives
an error line {"id"?, "error": {"code", "message"}} on standard output too (so outputs pair with inputs
by position), and the command goes on; the exit status is 0 even then. Codes: invalid_json,
invalid_input (not an object), invalid_id, missing_text, invalid_text, text_too_long,
internal_error (a bug: logged on stderr). Ids are echoed as given; use strings for ids beyond 2**63.

`--transformers DIR` (sentiment) and `--transformers-intent DIR` classify with local Hugging Face models
(listening.backends.huggingface) instead of the built-in model's heads; a model that cannot be loaded
stops the command before it reads any input (exit status 1), unlike ingestion, which falls back.
"""

import logging
import sys

import orjson
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import translation
from django.utils.translation import gettext as _

from tertulia.listening.backends import BackendNotInstalled, ModelUnusable, transformers_model
from tertulia.listening.classify import Classifier, classify_many

logger = logging.getLogger(__name__)

MAX_TEXT = 20_000  # characters; longer texts are not social posts


def _error(code: str, message: str, row_id=None) -> dict:
    out: dict = {} if row_id is None else {"id": row_id}
    out["error"] = {"code": code, "message": message}
    return out


def parse_line(line: bytes) -> tuple[object, str | None, dict | None]:
    """(id, text, error) for one input line."""
    try:
        row = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None, None, _error("invalid_json", _("The line is not valid JSON (UTF-8)."))
    if not isinstance(row, dict):
        return None, None, _error("invalid_input", _('Each line must be a JSON object {"id", "text"}.'))
    row_id = row.get("id")
    if isinstance(row_id, dict | list | bool):
        return None, None, _error("invalid_id", _("id must be a string, a number or null."))
    if "text" not in row or row["text"] is None:
        return row_id, None, _error("missing_text", _("text is required."), row_id)
    text = row["text"]
    if not isinstance(text, str):
        return row_id, None, _error("invalid_text", _("text must be a string."), row_id)
    if len(text) > MAX_TEXT:
        return row_id, None, _error("text_too_long", _("text is longer than %(max)d characters.") % {"max": MAX_TEXT}, row_id)
    return row_id, text, None


def _one(text: str, with_toxicity: bool, model: Classifier | None):
    try:
        return classify_many([text], model=model, with_toxicity=with_toxicity)[0]
    except Exception:
        logger.exception("classify failed on one text")
        return None


def classify_lines(lines, out, *, batch: int = 256, with_toxicity: bool = True,
                   model: Classifier | None = None) -> dict[str, int]:
    """Classify byte lines into `out` (a binary stream); returns counts of classified and failed lines."""
    counts = {"classified": 0, "errors": 0}
    pending: list[tuple[object, str | None, dict | None]] = []

    def flush() -> None:
        texts = [text for _id, text, error in pending if error is None]
        try:
            predictions = iter(classify_many(texts, model=model, with_toxicity=with_toxicity))
        except Exception:  # one odd text must not stop the stream: retry one by one and report it
            predictions = iter([_one(text, with_toxicity, model) for text in texts])
        chunks = []
        for row_id, _text, error in pending:
            if error is not None:
                counts["errors"] += 1
                chunks.append(orjson.dumps(error))
                continue
            prediction = next(predictions)
            if prediction is None:
                counts["errors"] += 1
                chunks.append(orjson.dumps(_error("internal_error", _("This text could not be classified."), row_id)))
            else:
                counts["classified"] += 1
                chunks.append(orjson.dumps({"id": row_id, **prediction.as_dict()}))
        if chunks:
            out.write(b"\n".join(chunks) + b"\n")
            out.flush()
        pending.clear()

    for line in lines:
        if not line.strip():
            continue
        pending.append(parse_line(line))
        if len(pending) >= batch:
            flush()
    flush()
    return counts


class Command(BaseCommand):
    help = 'Classify JSON lines {"id", "text"} from standard input (language, sentiment, intent, toxicity).'

    def add_arguments(self, parser):
        parser.add_argument("--batch", type=int, default=256,
                            help="Lines classified together (1 answers each line as soon as it is read).")
        parser.add_argument("--no-toxicity", action="store_true", help="Skip the moderation checks (toxicity 0).")
        parser.add_argument("--language", choices=[code for code, _name in settings.LANGUAGES],
                            default=settings.LANGUAGE_CODE, help="Language of error messages (codes never change).")
        parser.add_argument("--transformers", metavar="DIR", default="",
                            help="Sentiment from a local Hugging Face sequence-classification model (never downloaded).")
        parser.add_argument("--transformers-intent", metavar="DIR", default="",
                            help="Intent from a local Hugging Face model whose labels are our intents.")

    def handle(self, *args, batch: int, no_toxicity: bool, language: str, transformers: str,
               transformers_intent: str, **options):
        model = None
        if transformers or transformers_intent:
            try:
                model = transformers_model(sentiment=transformers, intent=transformers_intent)
            except (BackendNotInstalled, ModelUnusable) as error:
                raise CommandError(str(error)) from error
        with translation.override(language):
            self._run(batch=batch, no_toxicity=no_toxicity, model=model)

    def _run(self, *, batch: int, no_toxicity: bool, model: Classifier | None = None) -> None:
        stdout = getattr(self.stdout, "_out", sys.stdout)
        binary = getattr(stdout, "buffer", None)
        stdin = getattr(sys.stdin, "buffer", sys.stdin)
        target = binary if binary is not None else _TextWriter(stdout)
        counts = classify_lines(stdin, target, batch=max(1, batch), with_toxicity=not no_toxicity, model=model)
        if counts["errors"]:
            sys.stderr.write(_("classified: %(classified)d, lines with errors: %(errors)d") % counts + "\n")


class _TextWriter:
    """A binary face for a text stream (StringIO in tests via call_command)."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, data: bytes) -> None:
        self.stream.write(data.decode())

    def flush(self) -> None:
        self.stream.flush()
