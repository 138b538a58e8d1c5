"""livedub."""
