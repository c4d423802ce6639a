"""The one pytest test of the harness: a platform × scenario cell (parametrised by bench.harness)."""


def test_cell(cell, harness, benchmark):
    harness.run_cell(*cell, benchmark)
