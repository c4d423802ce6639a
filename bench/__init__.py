"""The harness: host setup, runs of platform × scenario cells, results storage, statistics, CLI."""
