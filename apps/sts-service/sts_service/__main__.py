"""`sts-service` console script."""

from __future__ import annotations

import logging
import sys

from .config import ConfigError, parse_args


def main(argv: list[str] | None = None) -> None:
    try:
        cfg = parse_args(argv)
    except ConfigError as exc:
        print(f"sts-service: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    logging.basicConfig(level=cfg.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from .server import run  # heavy imports after the config is known to be good

    run(cfg)


if __name__ == "__main__":
    main()
