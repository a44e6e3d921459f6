"""Fault tests: the core's promises under random interleavings of races and failures."""
