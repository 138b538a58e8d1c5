def main() -> None:  # replaced when the server lands
    raise SystemExit("sts-service: not implemented yet")
