"""Fault injection against the real stack: kill workers, take Redis and Postgres away, deliver
messages more than once, retry requests that timed out; then check that no money moved twice and
nothing acknowledged was lost. `make chaos` runs the full scenarios; tests/chaos runs them small."""
