"""Speech recognition: faster-whisper in process (whisper), its truncation/hallucination guards,
and an OpenAI-compatible model server (openai)."""

ASR_RATE = 16000  # Whisper's input rate: every engine here is given float32 mono audio at this rate
