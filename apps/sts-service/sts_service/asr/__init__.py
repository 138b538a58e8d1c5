"""Speech recognition: faster-whisper in process (whisper), its truncation/hallucination guards,
and an OpenAI-compatible model server (openai)."""
