"""The small dataclasses other apps exchange with moderation: what is judged, each check's result, the verdict."""

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(slots=True)
class ContentItem:
    """One piece of community content to judge. Raw device ids and IPs never leave this object unhashed."""

    kind: str  # review, question, answer, comment, testimonial, forum_post
    text: str
    title: str = ""
    author_name: str = ""  # display name; "" = anonymous
    customer_id: int | None = None
    email: str = ""  # given by the author, never shown
    device_id: str = ""  # the widget's localStorage id; hashed before storing
    ip: str = ""  # hashed before storing
    language: str = ""  # "" = detect
    subject: str = ""  # what it should be about: product name, category, store name
    subject_terms: Sequence[str] = ()  # product name, category names, SKU, store name...


@dataclass(slots=True)
class CheckResult:
    code: str
    score: float  # 0..1, how sure the check is that the policy was broken
    evidence: list[str] = field(default_factory=list)  # what was matched, for the moderator

    def as_dict(self) -> dict:
        return {"code": self.code, "score": round(self.score, 3), "evidence": self.evidence}


@dataclass(slots=True)
class Verdict:
    action: str  # "publish" | "hold" | "reject"
    results: list[CheckResult]
    policy_version: int
    language: str
    # Codes whose score reached the hold threshold, strongest first: the reasons the author is told.
    triggered: list[str] = field(default_factory=list)
    # The history row moderation kept for this submission; pass it to decision_record when the
    # content was saved after moderating it (content_id unknown at the time).
    judgement_id: int | None = None

    def result(self, code: str) -> CheckResult | None:
        return next((r for r in self.results if r.code == code), None)
