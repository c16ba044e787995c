"""vidqa's benchmarks: scripts that measure, run as `python -m benchmarks.NAME` from the repository root."""
