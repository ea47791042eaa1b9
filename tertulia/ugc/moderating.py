"""The one place ugc talks to the moderation app (interface 1 of docs/ugc.md).

Kept narrow on purpose: ugc hands over what is being judged and gets back an action, the check
results and the policy version; it never reads moderation's tables.
"""

from dataclasses import dataclass, field
from typing import Any

from tertulia.core.models import Store
from tertulia.moderation import services as moderation_services
from tertulia.moderation.items import CheckResult, ContentItem

ACTION_STATUS = {"publish": "published", "hold": "held", "reject": "rejected"}


@dataclass(frozen=True, slots=True)
class Judgement:
    action: str  # publish | hold | reject
    results: list[dict[str, Any]] = field(default_factory=list)  # [{code, score, evidence}]
    policy_version: int = 0
    language: str = ""
    triggered: list[str] = field(default_factory=list)  # codes that reached the hold threshold, strongest first

    @property
    def status(self) -> str:
        return ACTION_STATUS.get(self.action, "held")

    def as_json(self) -> dict[str, Any]:
        return {"action": self.action, "results": self.results, "policy_version": self.policy_version,
                "language": self.language, "triggered": self.triggered}


def _result_json(result: Any) -> dict[str, Any]:
    return {"code": str(result.code), "score": round(float(result.score), 4),
            "evidence": [str(e)[:200] for e in (result.evidence or [])][:5]}


def content_judge(*, store: Store, kind: str, content_type: str, content_id: int, text: str, title: str = "",
                  author_name: str = "", customer_id: int | None = None, email: str = "", device_id: str = "",
                  ip: str = "", language: str = "", subject: str = "", subject_terms: list[str] | None = None,
                  ) -> Judgement:
    """Run the store's policy on one saved contribution; moderation records the automatic decision."""
    item = ContentItem(
        kind=kind, text=text, title=title, author_name=author_name, customer_id=customer_id, email=email,
        device_id=device_id, ip=ip, language=language, subject=subject, subject_terms=list(subject_terms or []),
    )
    verdict = moderation_services.content_moderate(store=store, item=item, content_type=content_type, content_id=content_id)
    return Judgement(action=verdict.action, results=[_result_json(r) for r in verdict.results],
                     policy_version=int(verdict.policy_version or 0), language=verdict.language or language,
                     triggered=[str(code) for code in verdict.triggered])


def decision_human(*, store: Store, content_type: str, content_id: int, action: str, previous: dict, user,
                   note: str = "") -> None:
    """Audit a moderator's decision (or an automatic re-hold after reader flags, with user=None)."""
    results = [CheckResult(code=r["code"], score=r["score"], evidence=list(r.get("evidence", [])))
               for r in previous.get("results", []) if "code" in r]
    moderation_services.decision_record(
        store=store, content_type=content_type, content_id=content_id, action=action, results=results,
        policy_version=int(previous.get("policy_version") or 0), decided_by=user, automatic=user is None,
        note=note,
    )


def reasons_of(moderation: dict, status: str) -> list[str]:
    """The reason codes to tell the author: the checks that fired, strongest first; none when published."""
    if status == "published":
        return []
    if moderation.get("triggered"):
        return [str(code) for code in moderation["triggered"]][:3]
    results = [r for r in moderation.get("results", []) if float(r.get("score", 0)) > 0]
    results.sort(key=lambda r: -float(r["score"]))
    codes: list[str] = []
    for result in results:
        if result["code"] not in codes:
            codes.append(result["code"])
    return codes[:3]


def reason_text(code: str, language: str) -> str:
    return moderation_services.reason_message(code, language)
