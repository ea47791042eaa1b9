"""The demo's credentials file: read leniently, written atomically and readable only by its owner."""

import json
import os
from pathlib import Path

CREDENTIALS_FILE = "demo-credentials.json"
FIELDS = ("url", "username", "password", "store", "api_key", "shopify_secret", "woocommerce_secret")


def credentials_read(path: Path) -> dict[str, str]:
    """What an earlier run saved, or {} when there is nothing usable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {key: value for key, value in data.items() if key in FIELDS and isinstance(value, str)}


def credentials_write(path: Path, credentials: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    # Created 0600 from the start: the password and API key are never readable by others, even briefly.
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump({key: credentials[key] for key in FIELDS}, handle, indent=2)
        handle.write("\n")
    os.chmod(temporary, 0o600)
    os.replace(temporary, path)
