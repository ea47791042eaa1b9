"""`tertulia classify` over real standard input and output, including bad lines."""

import io
import os
import subprocess
import sys

import orjson

from tertulia.listening.management.commands.classify import classify_lines


def run_command(stdin: bytes, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tertulia.settings"}
    return subprocess.run([sys.executable, "-m", "tertulia", "classify", *args], input=stdin, capture_output=True,
                          env=env, timeout=120, check=False)


def test_command_classifies_stdin_to_stdout_and_reports_bad_lines_in_place():
    lines = [
        orjson.dumps({"id": "a", "text": "Me encanta la tienda, todo perfecto"}),
        b"",
        b"{not json",
        orjson.dumps([1, 2]),
        orjson.dumps({"id": "b"}),
        orjson.dumps({"id": {"x": 1}, "text": "hola"}),
        orjson.dumps({"id": 7, "text": 12}),
        orjson.dumps({"id": 8, "text": "x" * 20_001}),
        b"\xff\xfe\xfd",
        orjson.dumps({"id": 9, "text": "Terrible service, my order arrived broken"}),
        orjson.dumps({"text": "eres un idiota de mierda"}),
    ]
    result = run_command(b"\n".join(lines) + b"\n")
    assert result.returncode == 0, result.stderr
    out = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert len(out) == 10  # one per non-blank line, in order
    assert out[0] == {"id": "a", "language": "es", "sentiment": "positive", "sentiment_score": out[0]["sentiment_score"],
                      "intent": "praise", "toxicity": 0.0}
    assert [o.get("error", {}).get("code") for o in out[1:8]] == [
        "invalid_json", "invalid_input", "missing_text", "invalid_id", "invalid_text", "text_too_long", "invalid_json"]
    assert out[3]["id"] == "b" and out[5]["id"] == 7 and "id" not in out[1]
    assert all(set(o["error"]) == {"code", "message"} for o in out[1:8])
    assert out[8]["id"] == 9 and out[8]["language"] == "en" and out[8]["sentiment"] == "negative"
    assert out[9]["id"] is None and out[9]["toxicity"] > 0.5
    assert "líneas con errores: 7" in result.stderr.decode()  # messages in the site's language (es)
    assert out[2]["error"]["message"] == "Cada línea debe ser un objeto JSON {\"id\", \"text\"}."


def test_error_messages_in_english_on_request():
    result = run_command(b'{"id": "b"}\n', "--language", "en")
    assert orjson.loads(result.stdout) == {"id": "b", "error": {"code": "missing_text", "message": "text is required."}}
    assert b"classified: 0, lines with errors: 1" in result.stderr


def test_command_with_options_and_empty_input():
    result = run_command(b'{"id": 1, "text": "eres un idiota"}\n', "--no-toxicity", "--batch", "1")
    assert result.returncode == 0
    assert orjson.loads(result.stdout)["toxicity"] == 0.0
    empty = run_command(b"")
    assert empty.returncode == 0 and empty.stdout == b"" and empty.stderr == b""


def test_batches_keep_order():
    texts = [f"post {i} ¿tenéis talla {i}?" if i % 2 else f"post {i} love it" for i in range(40)]
    lines = [orjson.dumps({"id": i, "text": t}) for i, t in enumerate(texts)]
    lines.insert(5, b"oops")
    out = io.BytesIO()
    counts = classify_lines(iter(lines), out, batch=3, with_toxicity=False)
    rows = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert counts == {"classified": 40, "errors": 1}
    assert [r.get("id") for r in rows] == [0, 1, 2, 3, 4, None, *range(5, 40)]


def test_a_failing_text_is_an_error_line_not_a_crash(monkeypatch):
    from tertulia.listening.management.commands import classify as command

    real = command.classify_many

    def fragile(texts, **kwargs):
        if any("boom" in t for t in texts):
            raise RuntimeError("simulated bug")
        return real(texts, **kwargs)

    monkeypatch.setattr(command, "classify_many", fragile)
    out = io.BytesIO()
    lines = [orjson.dumps({"id": i, "text": t}) for i, t in enumerate(["hola", "boom", "hello"])]
    assert command.classify_lines(iter(lines), out, with_toxicity=False) == {"classified": 2, "errors": 1}
    rows = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert rows[1] == {"id": 1, "error": {"code": "internal_error", "message": rows[1]["error"]["message"]}}
    assert rows[0]["language"] == "es" and rows[2]["language"] == "en"
