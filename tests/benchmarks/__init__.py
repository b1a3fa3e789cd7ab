"""Benchmarks against real Kafka and PostgreSQL: `make bench` (`python -m tests.benchmarks`).

Each `bench_*.py` module exposes `async def run(ctx) -> list[Figure]`; see `harness.py`
for the contract and `docs/benchmarks.md` for the latest figures. Not collected by pytest.
"""
