"""How urgent a conversation is: a 0-100 score from what the person wants, how they feel and how many listen.

Weights are ours, written down so a store can see why one conversation is above another:

- intent: complaint 35, question 25, purchase intent 30 (a sale waiting), praise 0, other 5;
- sentiment: a negative message adds up to 25 (its score's strength), a positive one nothing;
- reach: log10(followers + 1) x 6, at most 25 (10 followers -> 6, 10,000 -> 24): a public complaint
  from an account many people read costs more;
- kind: a direct message or an e-mail +10 (the person is waiting for an answer, not just talking);
  a known customer +5;
- toxicity above 0.8 takes 20 off: abuse goes to moderation first, the team is not asked to argue.

Levels: urgent >= 65, high >= 45, normal >= 20, low below.
"""

import math

INTENT_POINTS = {"complaint": 35, "question": 25, "purchase_intent": 30, "praise": 0, "other": 5}
LEVELS = (("urgent", 65), ("high", 45), ("normal", 20), ("low", 0))


def priority_score(*, intent: str = "", sentiment: str = "", sentiment_score: float = 0.0, reach: int | None = None,
                   direct: bool = False, known_customer: bool = False, toxicity: float = 0.0) -> int:
    score = float(INTENT_POINTS.get(intent, 5))
    if sentiment == "negative":
        score += 25 * min(max(abs(sentiment_score), 0.4), 1.0)
    if reach:
        score += min(25.0, math.log10(max(reach, 0) + 1) * 6)
    if direct:
        score += 10
    if known_customer:
        score += 5
    if toxicity > 0.8:
        score -= 20
    return int(round(min(max(score, 0.0), 100.0)))


def priority_level(score: int) -> str:
    for level, floor in LEVELS:
        if score >= floor:
            return level
    return "low"
