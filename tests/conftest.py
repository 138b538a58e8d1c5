"""The shared fixtures (``local_stack``, ``demo_media``, ``short_media``, ``rtmp_server``, ...) come
from ``livedub_testkit.pytest_plugin``, which pytest loads by itself wherever the livedub-testkit
distribution is installed (its ``pytest11`` entry point; ``make setup`` installs it)."""
