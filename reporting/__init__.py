"""Reporting: stored results -> statistics tables, plots and a self-contained HTML report."""
