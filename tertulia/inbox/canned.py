"""Canned replies: {{ variables }} in a saved answer, validated when saved and filled in for a conversation.

Plain text with `{{ name }}` placeholders and nothing else: no tags, no filters, no code, so a saved
reply cannot do anything but be text. Unknown names are refused when the reply is saved, never at send.
"""

import re
from collections.abc import Mapping

from django.utils.translation import gettext as _

VARIABLES = {
    "customer_name": "the person's first name, or their name or handle as the network shows it",
    "handle": "their handle or address",
    "agent_name": "the first name (or user name) of the agent answering",
    "store_name": "the store's name",
    "store_url": "the store's website",
    "product": "the product the conversation is about, when it names one",
    "order_number": "the person's latest order number, when known",
}
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_BRACES = re.compile(r"\{\{|\}\}|\{%|%\}")
MAX_BODY = 5000


def problems(body: object, field: str) -> list[tuple[str, str, str]]:
    """(field, code, message) for what is wrong with one body."""
    if not isinstance(body, str) or not body.strip():
        return [(field, "required", _("Write the reply."))]
    if len(body) > MAX_BODY:
        return [(field, "too_long", _("At most %(limit)s characters.") % {"limit": MAX_BODY})]
    found = []
    for name in _PLACEHOLDER.findall(body):
        if name not in VARIABLES:
            found.append((field, "unknown_variable", _("Unknown variable {{ %(name)s }}: use %(known)s.") % {
                "name": name, "known": ", ".join(sorted(VARIABLES))}))
    if _BRACES.search(_PLACEHOLDER.sub("", body)):
        found.append((field, "invalid_syntax", _("Only {{ variable }} placeholders are allowed.")))
    return found


def render(body: str, values: Mapping[str, str]) -> str:
    """Fill the placeholders; a variable without a value becomes empty, and the spaces it leaves are tidied."""
    text = _PLACEHOLDER.sub(lambda match: str(values.get(match[1], "") or ""), body)
    text = re.sub(r"[ \t]+([,.!?;:])", r"\1", text)
    return re.sub(r"[ \t]{2,}", " ", text).strip()
