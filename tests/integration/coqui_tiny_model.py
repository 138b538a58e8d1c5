"""Build a tiny, randomly initialised Coqui VITS model on disk (no download, ~1 MB, ~1 s).

The weights are random, so the "speech" is noise; what this exercises is the real Coqui
file format and loading path (``config.json`` + ``.pth`` checkpoint read by
``TTS.utils.synthesizer.Synthesizer``) and the real VITS inference graph. Graphemes
(``use_phonemes=False``), so no phonemizer is needed. Requires the ``coqui`` extra.
"""

from __future__ import annotations

import string
from pathlib import Path

SAMPLE_RATE = 16000
LANGUAGE = "es"


def build_tiny_vits(directory: str | Path, *, seed: int = 0) -> tuple[str, str]:
    """Write ``model.pth`` and ``config.json`` into *directory*; return ``(model_path, config_path)``."""
    import torch
    from TTS.tts.configs.shared_configs import CharactersConfig
    from TTS.tts.configs.vits_config import VitsArgs, VitsConfig
    from TTS.tts.models.vits import Vits

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)

    characters = CharactersConfig(
        characters_class="TTS.tts.utils.text.characters.Graphemes",
        pad="_",
        eos="&",
        bos="*",
        blank=None,
        characters=string.ascii_lowercase + "áéíóúüñ",
        punctuations=" !¡'(),-.:;?¿",
    )
    args = VitsArgs(
        hidden_channels=16,
        hidden_channels_ffn_text_encoder=32,
        num_heads_text_encoder=2,
        num_layers_text_encoder=1,
        num_layers_posterior_encoder=1,
        num_layers_flow=1,
        use_sdp=False,  # plain duration predictor: smaller, deterministic lengths
        resblock_kernel_sizes_decoder=[3],
        resblock_dilation_sizes_decoder=[[1, 3, 5]],
        upsample_rates_decoder=[8, 8, 4],  # product == hop_length
        upsample_kernel_sizes_decoder=[16, 16, 8],
        upsample_initial_channel_decoder=32,
        init_discriminator=False,
    )
    config = VitsConfig(
        model_args=args,
        text_cleaner="multilingual_cleaners",
        use_phonemes=False,
        phoneme_language=LANGUAGE,
        characters=characters,
        add_blank=False,
    )
    config.audio.sample_rate = SAMPLE_RATE
    config.audio.hop_length = 256
    config.audio.win_length = 1024
    config.audio.fft_size = 1024

    model = Vits(config)
    # A random duration predictor gives ~1 frame per token; bias it so each character lasts
    # a few frames and the output has a realistic length (exp(2) ~ 7 frames ~ 0.1 s a char).
    with torch.no_grad():
        model.duration_predictor.proj.bias.fill_(2.0)

    model_path = directory / "model.pth"
    config_path = directory / "config.json"
    torch.save({"model": model.state_dict()}, model_path)
    config.save_json(str(config_path))
    return str(model_path), str(config_path)
