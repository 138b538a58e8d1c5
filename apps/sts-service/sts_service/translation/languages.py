"""What the neural engines need to know about a language: its English name (LLM prompts), its
NLLB-200 code (NLLB's language tokens) and its script (checking that an LLM answered in it)."""

from __future__ import annotations

import unicodedata

# ISO 639-1 -> (English name, NLLB-200 code, script). The script is the prefix of the Unicode
# character names of its letters ("LATIN SMALL LETTER A", "CYRILLIC ...", "CJK UNIFIED ...").
LANGUAGES: dict[str, tuple[str, str, str]] = {
    "af": ("Afrikaans", "afr_Latn", "LATIN"), "ar": ("Arabic", "arb_Arab", "ARABIC"),
    "bg": ("Bulgarian", "bul_Cyrl", "CYRILLIC"), "ca": ("Catalan", "cat_Latn", "LATIN"),
    "cs": ("Czech", "ces_Latn", "LATIN"), "cy": ("Welsh", "cym_Latn", "LATIN"),
    "da": ("Danish", "dan_Latn", "LATIN"), "de": ("German", "deu_Latn", "LATIN"),
    "el": ("Greek", "ell_Grek", "GREEK"), "en": ("English", "eng_Latn", "LATIN"),
    "es": ("Spanish", "spa_Latn", "LATIN"), "et": ("Estonian", "est_Latn", "LATIN"),
    "eu": ("Basque", "eus_Latn", "LATIN"), "fa": ("Persian", "pes_Arab", "ARABIC"),
    "fi": ("Finnish", "fin_Latn", "LATIN"), "fr": ("French", "fra_Latn", "LATIN"),
    "ga": ("Irish", "gle_Latn", "LATIN"), "gl": ("Galician", "glg_Latn", "LATIN"),
    "he": ("Hebrew", "heb_Hebr", "HEBREW"), "hi": ("Hindi", "hin_Deva", "DEVANAGARI"),
    "hr": ("Croatian", "hrv_Latn", "LATIN"), "hu": ("Hungarian", "hun_Latn", "LATIN"),
    "id": ("Indonesian", "ind_Latn", "LATIN"), "it": ("Italian", "ita_Latn", "LATIN"),
    "ja": ("Japanese", "jpn_Jpan", "CJK"), "ko": ("Korean", "kor_Hang", "HANGUL"),
    "lt": ("Lithuanian", "lit_Latn", "LATIN"), "lv": ("Latvian", "lvs_Latn", "LATIN"),
    "nb": ("Norwegian Bokmål", "nob_Latn", "LATIN"), "nl": ("Dutch", "nld_Latn", "LATIN"),
    "pl": ("Polish", "pol_Latn", "LATIN"), "pt": ("Portuguese", "por_Latn", "LATIN"),
    "ro": ("Romanian", "ron_Latn", "LATIN"), "ru": ("Russian", "rus_Cyrl", "CYRILLIC"),
    "sk": ("Slovak", "slk_Latn", "LATIN"), "sl": ("Slovenian", "slv_Latn", "LATIN"),
    "sr": ("Serbian", "srp_Cyrl", "CYRILLIC"), "sv": ("Swedish", "swe_Latn", "LATIN"),
    "sw": ("Swahili", "swh_Latn", "LATIN"), "th": ("Thai", "tha_Thai", "THAI"),
    "tr": ("Turkish", "tur_Latn", "LATIN"), "uk": ("Ukrainian", "ukr_Cyrl", "CYRILLIC"),
    "ur": ("Urdu", "urd_Arab", "ARABIC"), "vi": ("Vietnamese", "vie_Latn", "LATIN"),
    "zh": ("Chinese", "zho_Hans", "CJK"),
}  # fmt: skip
# Japanese is written with kana as well as kanji.
_ALSO = {"ja": ("HIRAGANA", "KATAKANA"), "ko": ("CJK",)}


def name(code: str) -> str:
    return LANGUAGES[code][0] if code in LANGUAGES else code


def nllb_code(code: str) -> str | None:
    return LANGUAGES[code][1] if code in LANGUAGES else None


def script_share(text: str, code: str) -> float | None:
    """Share of the letters of `text` written in `code`'s script (None: unknown language or no
    letters). Digits, punctuation and spaces do not count."""
    if code not in LANGUAGES:
        return None
    scripts = (LANGUAGES[code][2], *_ALSO.get(code, ()))
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return None
    ok = sum(1 for c in letters if unicodedata.name(c, "").startswith(scripts))
    return ok / len(letters)
