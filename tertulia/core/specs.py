"""Checking a provider account's or a listening source's settings and secrets against what its kind declares."""

from collections.abc import Mapping
from typing import Any

from tertulia.core.errors import ErrorDetail


def settings_problems(*, label: str, settings: Mapping[str, Any], secrets: Mapping[str, Any],
                      allowed: Mapping[str, type | tuple[type, ...]], required: frozenset[str],
                      secret_names: frozenset[str], required_secrets: frozenset[str],
                      secrets_known: set[str]) -> list[ErrorDetail]:
    """Unknown names, wrong JSON types, missing required values, empty secrets; `label` names the kind in
    messages ("twilio accounts", "mastodon sources"). `secrets_known`: the secrets the record will have."""
    problems: list[ErrorDetail] = []
    for name, value in settings.items():
        expected = allowed.get(name)
        if expected is None:
            problems.append(ErrorDetail(field=f"settings.{name}", code="unknown_setting",
                                        message=f"{label} take: {', '.join(sorted(allowed)) or 'none'}."))
            continue
        kinds = expected if isinstance(expected, tuple) else (expected,)
        # JSON true is a Python int too: a boolean only passes where a boolean is wanted.
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
            problems.append(ErrorDetail(field=f"settings.{name}", code="invalid_type", message="Wrong type."))
    for name in sorted(required - {k for k, v in settings.items() if v not in ("", None, [])}):
        problems.append(ErrorDetail(field=f"settings.{name}", code="required", message="Required."))
    for name, value in secrets.items():
        if name not in secret_names:
            problems.append(ErrorDetail(field=f"secrets.{name}", code="unknown_secret",
                                        message=f"{label} keep: {', '.join(sorted(secret_names)) or 'none'}."))
        elif not isinstance(value, str) or not value:
            problems.append(ErrorDetail(field=f"secrets.{name}", code="invalid", message="Must be a non-empty string."))
    for name in sorted(required_secrets - secrets_known):
        problems.append(ErrorDetail(field=f"secrets.{name}", code="required", message="Required."))
    return problems
