"""Workloads that run unchanged on every platform. Each module here is one scenario (see base.py)."""
