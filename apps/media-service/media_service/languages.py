"""Language tags as containers want them: MPEG-TS (ISO_639_language_descriptor) and Matroska take
three-letter ISO 639-2 codes, HLS `LANGUAGE` and WebVTT take the request's BCP 47 tag as it is.

The table covers the ISO 639-1 codes with a 639-2 equivalent that streams are likely to use (the
bibliographic form, as DVB receivers expect: `fre`, `ger`); anything else becomes `und`
(undetermined), never a wrong code. A three-letter tag is already 639-2 and is kept.
"""

from __future__ import annotations

ISO639_1_TO_2 = {
    "af": "afr", "am": "amh", "ar": "ara", "az": "aze", "be": "bel", "bg": "bul", "bn": "ben", "bs": "bos",
    "ca": "cat", "cs": "cze", "cy": "wel", "da": "dan", "de": "ger", "el": "gre", "en": "eng", "eo": "epo",
    "es": "spa", "et": "est", "eu": "baq", "fa": "per", "fi": "fin", "fr": "fre", "ga": "gle", "gl": "glg",
    "gu": "guj", "he": "heb", "hi": "hin", "hr": "hrv", "hu": "hun", "hy": "arm", "id": "ind", "is": "ice",
    "it": "ita", "ja": "jpn", "ka": "geo", "kk": "kaz", "km": "khm", "kn": "kan", "ko": "kor", "ky": "kir",
    "la": "lat", "lt": "lit", "lv": "lav", "mk": "mac", "ml": "mal", "mn": "mon", "mr": "mar", "ms": "may",
    "mt": "mlt", "my": "bur", "nb": "nob", "ne": "nep", "nl": "dut", "nn": "nno", "no": "nor", "oc": "oci",
    "pa": "pan", "pl": "pol", "pt": "por", "ro": "rum", "ru": "rus", "si": "sin", "sk": "slo", "sl": "slv",
    "sq": "alb", "sr": "srp", "sv": "swe", "sw": "swa", "ta": "tam", "te": "tel", "th": "tha", "tl": "tgl",
    "tr": "tur", "uk": "ukr", "ur": "urd", "uz": "uzb", "vi": "vie", "zh": "chi", "zu": "zul",
}


def iso639_2(tag: str) -> str:
    """The ISO 639-2 code of a BCP 47 tag's primary language (`es-MX` -> `spa`), `und` if unknown."""
    primary = tag.split("-", 1)[0].lower()
    if len(primary) == 3 and primary.isalpha():
        return primary
    return ISO639_1_TO_2.get(primary, "und")
