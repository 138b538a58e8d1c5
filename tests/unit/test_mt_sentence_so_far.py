"""Which part of the stream's context CTranslate2 continues: the unfinished sentence it ends with
(translation/ct2.py `sentence_so_far`), with the translation to force as the target prefix."""

from __future__ import annotations

import pytest
from sts_service.translation.base import Context
from sts_service.translation.ct2 import MAX_CONTEXT_CHARS, ends_sentence, sentence_so_far


@pytest.mark.parametrize(("text", "ends"), [
    ("We have a lot to talk", False), ("about tonight.", True), ("Really?", True), ("Wait!", True),
    ("and then…", True), ('He said "stop."', True), ("(as planned.)", True), ("we met, and", False),
    ("Mr. Smith and", False), ("", False)])
def test_final_punctuation_ends_a_sentence(text, ends):
    assert ends_sentence(text) is ends


def test_nothing_to_continue():
    assert sentence_so_far(None) is None
    assert sentence_so_far(Context()) is None
    assert sentence_so_far(Context((("We have a lot to talk about.", "Tenemos mucho de que hablar."),))) is None


def test_the_unfinished_sentence_across_fragments():
    ctx = Context((("Good evening.", "Buenas noches."), ("We have a lot", "Tenemos mucho"),
                   ("to talk", "de que hablar")))
    assert sentence_so_far(ctx) == ("We have a lot to talk", "Tenemos mucho de que hablar")


def test_a_sentence_ending_inside_a_fragment_keeps_its_last_sentence():
    ctx = Context((("Thank you. We have a lot to talk", "Gracias. Tenemos mucho que hablar"),))
    assert sentence_so_far(ctx) == ("We have a lot to talk", "Tenemos mucho que hablar")
    # the translation does not split the same way: which part is the last sentence is unknown
    assert sentence_so_far(Context((("Thank you. We have a lot to talk", "Gracias, tenemos mucho"),))) is None


def test_a_translation_not_back_yet_ends_what_can_be_forced():
    assert sentence_so_far(Context((("We have a lot", "Tenemos mucho"), ("to talk", "")))) is None
    assert sentence_so_far(Context((("We have a lot", ""), ("to talk", "que hablar")))) == ("to talk", "que hablar")


def test_bounded_to_whole_fragments_the_latest_kept():
    old = ("word " * (MAX_CONTEXT_CHARS // 5)).strip()
    ctx = Context(((old, "palabra"), ("we have a lot", "tenemos mucho")))
    assert sentence_so_far(ctx) == ("we have a lot", "tenemos mucho")
    assert sentence_so_far(Context(((old + " and more", "palabra"),))) is None
