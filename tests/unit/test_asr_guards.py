"""Truncation guards: what makes a sized-window transcription suspect."""

from sts_service.asr.guards import compression_ratio, repeated_span, restarted, suspect_reason, token_budget


def test_token_budget_grows_with_duration():
    assert token_budget(1.0) < token_budget(3.0) < token_budget(10.0)
    assert token_budget(2.5) == 28


def test_immediate_repeat_is_found():
    assert repeated_span([1, 2, 3, 4, 1, 2, 3, 4]) == (0, 4)
    assert repeated_span([9, 1, 2, 3, 1, 2, 3]) == (1, 3)


def test_loop_cut_by_the_budget_is_found():
    # "our city council approved a park . our city council approved" (cut mid-loop)
    tokens = [5, 6, 7, 8, 9, 10, 11, 5, 6, 7, 8, 9, 10]
    assert repeated_span(tokens) is not None


def test_ordinary_sentences_are_not_suspect():
    tokens = list(range(20))
    text = "The museum will open a new exhibition about ancient history."
    assert repeated_span(tokens) is None
    assert suspect_reason(tokens, text, 3.4) == ""


def test_reasons():
    loop = [1, 2, 3, 1, 2, 3]
    assert suspect_reason(loop, "a b c a b c", 3.0) == "repetition"
    assert suspect_reason(list(range(100)), "x", 1.0) == "token_budget"
    assert suspect_reason(list(range(10)), "la " * 40, 5.0) == "compression_ratio"
    assert compression_ratio("") == 0.0


def test_a_sentence_begun_again_is_a_restart():
    # Seen on 800-1000 frame windows: the clause, a full stop, then its start again (cut by the budget).
    assert restarted("Farmers in the South are worried. Farmers in the")
    assert restarted("A small plane made an emergency landing in a field. A small plane made an")
    assert restarted("after a computer fault stop several flights. After a computer fault stop several")
    assert restarted("Good morning. Good morning.")
    assert suspect_reason(list(range(12)), "Farmers in the South are worried. Farmers in the", 2.0) == "restart"


def test_ordinary_sentences_are_not_restarts():
    assert not restarted("Farmers in the South are worried.")
    assert not restarted("The river rose. The town was flooded.")
    assert not restarted("It rained. It")  # one word is not enough to call a restart
    assert not restarted("")
