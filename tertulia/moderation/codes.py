"""Reason codes of the comment policy, their names for staff and the explanation an author reads (es/en)."""

from django.utils import translation
from django.utils.translation import gettext_lazy as _

INSULT = "insult"
PERSONAL_ATTACK = "personal_attack"
RUDENESS = "rudeness"
HATE = "hate"
REPETITION = "repetition"
PROMOTIONAL = "promotional"
OFF_TOPIC = "off_topic"
MULTIPLE_IDENTITIES = "multiple_identities"
IMPERSONATION = "impersonation"
PERSONAL_DATA = "personal_data"

REASON_CODES: tuple[str, ...] = (
    INSULT, PERSONAL_ATTACK, RUDENESS, HATE, REPETITION, PROMOTIONAL, OFF_TOPIC,
    MULTIPLE_IDENTITIES, IMPERSONATION, PERSONAL_DATA,
)

LANGUAGES = ("es", "en")

_LABELS = {
    INSULT: _("Insult"),
    PERSONAL_ATTACK: _("Personal attack"),
    RUDENESS: _("Rudeness"),
    HATE: _("Hate"),
    REPETITION: _("Repetition"),
    PROMOTIONAL: _("Promotional"),
    OFF_TOPIC: _("Off topic"),
    MULTIPLE_IDENTITIES: _("Multiple identities"),
    IMPERSONATION: _("Impersonation"),
    PERSONAL_DATA: _("Personal data"),
}

# Written for the author: what the policy asks, never a lecture, and what they can do about it.
_MESSAGES = {
    INSULT: _("Your text calls someone names. Criticise the product or the service as hard as you like, "
              "but without insulting the people here."),
    PERSONAL_ATTACK: _("Your text attacks or ridicules a person rather than discussing the product. "
                       "Please keep to what you think of the product or the service."),
    RUDENESS: _("Your text uses rude or offensive language. You can say the same thing without it."),
    HATE: _("Your text demeans people for who they are (origin, religion, sex, sexual orientation, "
            "disability...). That is never published."),
    REPETITION: _("You have already said this. Repeated posts on the same subject are not published twice."),
    PROMOTIONAL: _("Your text looks like advertising (links, contact details, codes or requests to follow "
                   "someone). Promotional content is not published."),
    OFF_TOPIC: _("Your text does not seem to be about this product or store. Please keep to the subject."),
    MULTIPLE_IDENTITIES: _("Several names seem to be posting from the same device or connection. You may post "
                           "anonymously, but not as several people."),
    IMPERSONATION: _("Your display name imitates the store, its staff or another member. Please choose a name "
                     "of your own."),
    PERSONAL_DATA: _("Your text contains an e-mail address, a phone number or other personal data. We do not "
                     "publish personal data; please remove it."),
}

_HELD = _("Your text will be read by a person before it is published.")
_REJECTED = _("Your text cannot be published as it is.")
_PUBLISHED = _("Thank you! Your text has been published.")


def _in_language(language: str, value) -> str:
    with translation.override(language if language in LANGUAGES else "es"):
        return str(value)


def reason_message(code: str, language: str) -> str:
    """Why a text was held or rejected, in the author's language (es or en; Spanish otherwise)."""
    message = _MESSAGES.get(code)
    if message is None:
        return _in_language(language, _REJECTED)
    return _in_language(language, message)


def reason_label(code: str, language: str) -> str:
    """The short name of a reason code, for staff screens and filters."""
    return _in_language(language, _LABELS.get(code, code))


def action_message(action: str, language: str) -> str:
    """One sentence saying what happens to the text: published, read by a person first, or refused."""
    text = {"publish": _PUBLISHED, "hold": _HELD}.get(action, _REJECTED)
    return _in_language(language, text)
