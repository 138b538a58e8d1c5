"""The models directory (`--models-dir`) and the `livedub-models` tool that fills it.

The services only ever read it; `livedub-models pull` is the one thing that downloads.
"""
