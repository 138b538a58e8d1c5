def main() -> None:  # replaced when the media-service lands
    raise SystemExit("media-service: not implemented yet")
