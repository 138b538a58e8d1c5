"""One stream's stages and their owner: capture -> dubbing (via the STS client) -> playout, run by
the worker; budget turns the delay D into fragment limits."""
