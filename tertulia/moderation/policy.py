"""A store's policy as numbers: defaults, validation of changes, and turning check scores into an action.

Thresholds: for each reason code, a score at or above `hold` sends the text to a person, at or above
`reject` refuses it; below `hold` it is published. A store may set a global "default" pair (applied
to every code it has not set one for) and pairs for single codes. Defaults are deliberately
asymmetric: what a human must see first (hate, threats, personal data) holds early; what is a
matter of taste (off-topic, rudeness) is never rejected without a person under the defaults.
"""

import math
import re
from dataclasses import dataclass, field

from tertulia.core.errors import ApiError, ErrorDetail
from tertulia.moderation import codes
from tertulia.moderation.items import CheckResult

DEFAULT_THRESHOLDS: dict[str, dict[str, float]] = {
    codes.INSULT: {"hold": 0.5, "reject": 0.85},
    codes.PERSONAL_ATTACK: {"hold": 0.5, "reject": 0.9},
    codes.RUDENESS: {"hold": 0.5, "reject": 0.95},
    codes.HATE: {"hold": 0.4, "reject": 0.85},
    codes.REPETITION: {"hold": 0.5, "reject": 0.85},
    codes.PROMOTIONAL: {"hold": 0.5, "reject": 0.85},
    codes.OFF_TOPIC: {"hold": 0.55, "reject": 1.0},
    codes.MULTIPLE_IDENTITIES: {"hold": 0.5, "reject": 0.95},
    codes.IMPERSONATION: {"hold": 0.5, "reject": 0.95},
    codes.PERSONAL_DATA: {"hold": 0.5, "reject": 1.0},
}
LIST_FIELDS = ("staff_names", "brand_terms", "allowed_domains")
FIELDS = ("thresholds", "enabled_checks", *LIST_FIELDS, "premoderate", "window_days")
_DOMAIN = re.compile(r"^(?=.{3,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
MAX_NAMES = 200
MAX_NAME_LENGTH = 100


@dataclass(frozen=True, slots=True)
class EffectivePolicy:
    version: int = 1
    thresholds: dict[str, tuple[float, float]] = field(default_factory=dict)  # code -> (hold, reject)
    enabled: frozenset[str] = frozenset(codes.REASON_CODES)
    staff_names: tuple[str, ...] = ()
    brand_terms: tuple[str, ...] = ()
    allowed_domains: tuple[str, ...] = ()
    premoderate: bool = False
    window_days: int = 30

    def threshold(self, code: str) -> tuple[float, float]:
        return self.thresholds.get(code) or (0.5, 0.9)

    def as_dict(self) -> dict:
        return {
            "version": self.version,
            "thresholds": {code: {"hold": h, "reject": r} for code, (h, r) in self.thresholds.items()},
            "enabled_checks": sorted(self.enabled),
            "staff_names": list(self.staff_names),
            "brand_terms": list(self.brand_terms),
            "allowed_domains": list(self.allowed_domains),
            "premoderate": self.premoderate,
            "window_days": self.window_days,
        }


def effective(*, version: int = 1, thresholds: dict | None = None, enabled_checks: list | None = None,
              staff_names=(), brand_terms=(), allowed_domains=(), premoderate: bool = False,
              window_days: int = 30) -> EffectivePolicy:
    """The policy a store applies: its own settings laid over the defaults."""
    stored = thresholds or {}
    default = stored.get("default") or {}
    merged: dict[str, tuple[float, float]] = {}
    for code in codes.REASON_CODES:
        base = dict(DEFAULT_THRESHOLDS[code])
        base.update(default)
        base.update(stored.get(code) or {})
        merged[code] = (float(base["hold"]), float(base["reject"]))
    return EffectivePolicy(
        version=version,
        thresholds=merged,
        enabled=frozenset(enabled_checks) if enabled_checks else frozenset(codes.REASON_CODES),
        staff_names=tuple(staff_names),
        brand_terms=tuple(brand_terms),
        allowed_domains=tuple(d.lower() for d in allowed_domains),
        premoderate=premoderate,
        window_days=window_days,
    )


def decide(policy: EffectivePolicy, results: list[CheckResult]) -> tuple[str, list[str]]:
    """The action for these results, and the codes that reached their hold threshold (strongest first)."""
    triggered: list[tuple[float, str]] = []
    action = "publish"
    for result in results:
        if result.code not in policy.enabled:
            continue
        hold, reject = policy.threshold(result.code)
        if result.score >= reject:
            action = "reject"
        elif result.score >= hold and action == "publish":
            action = "hold"
        if result.score >= hold:
            triggered.append((result.score, result.code))
    if action == "publish" and policy.premoderate:
        action = "hold"
    return action, [code for _, code in sorted(triggered, key=lambda t: (-t[0], t[1]))]


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def validate(data: dict) -> list[ErrorDetail]:
    """Every problem with a proposed policy (the whole result of a change), as error details."""
    errors: list[ErrorDetail] = []
    if not isinstance(data, dict):
        return [ErrorDetail("", "invalid_type", "The policy must be an object.")]
    for key in data:
        if key not in FIELDS:
            errors.append(ErrorDetail(key, "unknown_field", f"Unknown policy field '{key}'."))
    thresholds = data.get("thresholds", {})
    if not isinstance(thresholds, dict):
        errors.append(ErrorDetail("thresholds", "invalid_type", "Thresholds must be an object by reason code."))
        thresholds = {}
    default = thresholds.get("default") if isinstance(thresholds.get("default"), dict) else {}
    for code, pair in thresholds.items():
        where = f"thresholds.{code}"
        if code != "default" and code not in codes.REASON_CODES:
            errors.append(ErrorDetail(where, "unknown_code", f"'{code}' is not a reason code."))
            continue
        if not isinstance(pair, dict) or not pair:
            errors.append(ErrorDetail(where, "invalid_type", "Give {\"hold\": x, \"reject\": y} with numbers from 0 to 1."))
            continue
        for name, value in pair.items():
            if name not in ("hold", "reject"):
                errors.append(ErrorDetail(f"{where}.{name}", "unknown_field", "Only 'hold' and 'reject' can be set."))
            elif not _number(value):
                errors.append(ErrorDetail(f"{where}.{name}", "invalid_type", "Must be a number from 0 to 1."))
            elif not 0 <= value <= 1:
                errors.append(ErrorDetail(f"{where}.{name}", "out_of_range", "Must be from 0 to 1."))
        codes_covered = codes.REASON_CODES if code == "default" else (code,)
        for covered in codes_covered:
            base = dict(DEFAULT_THRESHOLDS[covered])
            if code != "default":
                base.update({k: v for k, v in default.items() if k in base and _number(v)})
            base.update({k: v for k, v in pair.items() if k in base and _number(v)})
            if base["hold"] > base["reject"]:
                errors.append(ErrorDetail(where, "hold_above_reject",
                                          f"'hold' ({base['hold']}) must not be above 'reject' ({base['reject']})"
                                          + ("" if code != "default" else f" for {covered}") + "."))
                break
    enabled = data.get("enabled_checks", [])
    if not isinstance(enabled, list) or not all(isinstance(c, str) for c in enabled):
        errors.append(ErrorDetail("enabled_checks", "invalid_type", "A list of reason codes."))
    else:
        for index, code in enumerate(enabled):
            if code not in codes.REASON_CODES:
                errors.append(ErrorDetail("enabled_checks", "unknown_code", f"'{code}' is not a reason code.", index))
    for name in LIST_FIELDS:
        values = data.get(name, [])
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            errors.append(ErrorDetail(name, "invalid_type", "A list of texts."))
            continue
        if len(values) > MAX_NAMES:
            errors.append(ErrorDetail(name, "too_many", f"At most {MAX_NAMES} entries."))
        for index, value in enumerate(values):
            if not value.strip() or len(value) > MAX_NAME_LENGTH:
                errors.append(ErrorDetail(name, "invalid_value", f"Each entry needs 1 to {MAX_NAME_LENGTH} characters.", index))
            elif name == "allowed_domains" and not _DOMAIN.match(value.strip().lower()):
                errors.append(ErrorDetail(name, "invalid_domain", f"'{value}' is not a domain name like shop.example.", index))
    if "premoderate" in data and not isinstance(data["premoderate"], bool):
        errors.append(ErrorDetail("premoderate", "invalid_type", "true or false."))
    window = data.get("window_days", 30)
    if not isinstance(window, int) or isinstance(window, bool) or not 1 <= window <= 365:
        errors.append(ErrorDetail("window_days", "out_of_range", "Whole days from 1 to 365."))
    return errors


def invalid(errors: list[ErrorDetail]) -> ApiError:
    return ApiError("invalid_policy", "The moderation policy has invalid values; nothing was changed.", 422, errors)
