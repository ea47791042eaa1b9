"""Normalisation undoes the usual disguises and leaves ordinary text, numbers and names alone."""

import pytest

from tertulia.moderation.normalize import fold, normalize, skeleton


@pytest.mark.parametrize("written, expected", [
    ("Eres un 1D10T4!!!", "eres un idiota"),
    ("p.u.t.a madre", "puta madre"),
    ("m i e r d a de producto", "mierda de producto"),
    ("vete a la m-i-e-r-d-a", "vete a la mierda"),
    ("Qué MIERDAAAA", "que mierda"),
    ("sh!t happens", "shit happens"),
    ("you are a m0r0n", "you are a moron"),
    ("Ｆｕｃｋ", "fuck"),
    ("idiоt", "idiot"),  # Cyrillic о
    ("i\u200bd\u200bi\u200bo\u200bt", "idiot"),  # zero-width spaces
    ("C.O.Ñ.O", "coño"),
    ("f u c k i n g zipper", "fucking zipper"),
])
def test_disguises_are_undone(written, expected):
    assert normalize(written).text == expected


@pytest.mark.parametrize("written, expected", [
    ("Me costó 35€ y tiene 5 estrellas, 100%!", "me costo 35 y tiene 5 estrellas 100"),
    ("El año pasado compré una talla 42", "el año pasado compre una talla 42"),
    ("4k TV, 24h delivery, x2 pack", "4k tv 24h delivery x2 pack"),
    ("u r a star", "u r a star"),  # three spaced letters are words, not a spelled-out word
    ("Great!!! Loved it", "great loved it"),
])
def test_ordinary_text_survives(written, expected):
    assert normalize(written).text == expected


def test_masks_and_alternate_readings_are_kept_for_lookup():
    masked = normalize("f*ck this")
    assert masked.tokens[0] == "f*ck" and masked.disguised == ["f*ck"]
    squeezed = normalize("asss")
    assert squeezed.tokens == ["as"] and "ass" in squeezed.alternates[0]
    one_as_l = normalize("l1ke")
    assert one_as_l.tokens == ["like"] and "llke" in one_as_l.alternates[0]


def test_fold_keeps_enye_and_strips_accents():
    assert fold("Ñandú CAFÉ") == "ñandu cafe"


def test_skeleton_of_look_alike_names():
    assert skeleton("Lucía Martín") == skeleton("lucia_martin") == skeleton("LUCІA MАRT1N")  # Cyrillic І and А
    assert skeleton("Lucía Martín") != skeleton("Lucas Martín")
    assert skeleton("rnaria") == skeleton("maria")


@pytest.mark.parametrize("text, language", [
    ("La suela se despegó a la semana y no contestan", "es"),
    ("¿Tallan grande?", "es"),
    ("The sole came off after a week and they never answer", "en"),
    ("Does it run large?", "en"),
])
def test_language_detection(text, language):
    from tertulia.moderation.language import language_detect

    assert language_detect(normalize(text).tokens, text) == language


def test_language_detection_falls_back_to_the_default():
    from tertulia.moderation.language import language_detect

    assert language_detect(normalize("OK").tokens, "OK", default="en") == "en"
