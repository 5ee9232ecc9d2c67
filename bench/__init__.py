"""Checkout benchmark (issue 7): `python -m bench --help`. Harness and statistics in bench.harness and
bench.stats, the engine-floor mode in bench.engine_floor, the results in bench.report."""
