"""`media-service` console script."""

from __future__ import annotations

import logging
import secrets
import sys

from .config import ConfigError, parse_args
from .redaction import redact_url


def main(argv: list[str] | None = None) -> None:
    try:
        cfg = parse_args(argv)
    except ConfigError as exc:
        print(f"media-service: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    logging.basicConfig(level=cfg.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if cfg.redis_url and not cfg.api_token:
        # Replicas forward requests to each other with it: a generated one would differ per replica.
        print("media-service: configuration error: with --redis-url, set MEDIA_API_TOKEN (the same on every "
              "replica)", file=sys.stderr)
        raise SystemExit(2)
    if not cfg.api_token:
        # Never an open API: a web page in the operator's browser could otherwise drive it.
        cfg.api_token = secrets.token_urlsafe(24)
        print(f"media-service: MEDIA_API_TOKEN is not set; this run's API token is {cfg.api_token}",
              file=sys.stderr, flush=True)
    from aiohttp import web

    from .control.api import make_app
    from .control.registry import StreamRegistry
    from .events import EventLog
    from .metrics import MediaMetrics

    metrics, events = MediaMetrics(), EventLog()
    registry = StreamRegistry(cfg, metrics, events)
    app = make_app(cfg, registry, metrics, events)
    logging.getLogger("media_service").info(
        "media-service on http://%s:%d, sts=%s, output delay %.1fs, max fragment %.0f ms, API %s",
        cfg.host, cfg.port, redact_url(cfg.sts_url), cfg.output_delay_s, cfg.max_fragment_ms,
        "bearer token")
    web.run_app(app, host=cfg.host, port=cfg.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
