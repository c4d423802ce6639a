"""The claims table: what the literature says, with its source, next to what this host measured.

Each claim names the metric (and variant) it is checked against and how: a ratio to native whose CI
should include a value, or an anchor figure to set a median beside. The verdict is mechanical and
says only whether this host's interval agrees; the reader judges the rest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

FELTER = ("W. Felter, A. Ferreira, R. Rajamony, J. Rubio, \"An Updated Performance Comparison of Virtual "
          "Machines and Linux Containers\", IEEE ISPASS 2015 (IBM Research Report RC25482, 2014)")
FIRECRACKER = ("A. Agache et al., \"Firecracker: Lightweight Virtualization for Serverless Applications\", "
               "USENIX NSDI 2020")
DESIGN_NOTES = "isolab design notes, measured on this workplace's machines (hyperfine, 100 runs), 2026-11"


@dataclass(frozen=True)
class Claim:
    statement: str
    source: str
    platform: str
    metric: str
    variant: str | None = None  # None: the first variant present
    expect_ratio: float | None = None  # the claim holds if the ratio-to-native CI includes this
    anchor: str | None = None  # a figure to set beside this host's median


CLAIMS = (
    Claim("Containers add no measurable CPU overhead: throughput equals native.", FELTER,
          "container", "sysbench_cpu_events_per_s", "threads=1", expect_ratio=1.0),
    Claim("Containers add no measurable CPU overhead (matrix kernel, Linpack-like).", FELTER,
          "container", "stressng_matrix_bogo_ops_per_s", "method=prod,threads=1", expect_ratio=1.0),
    Claim("A tuned KVM guest comes close to native CPU throughput.", FELTER,
          "vm", "sysbench_cpu_events_per_s", "threads=1", expect_ratio=1.0),
    Claim("QEMU boots a guest in 244 ms (default firmware) or 214 ms (qboot), hardware KVM.", FIRECRACKER,
          "vm", "startup_ready_s", "mode=serial", anchor="0.244 s / 0.214 s"),
    Claim("An OCI runtime starts /bin/true in a container in 16 ms (crun) or 29 ms (runc), median.", DESIGN_NOTES,
          "container", "startup_ready_s", "mode=serial", anchor="0.016 s / 0.029 s"),
)


def _row_for(summary: pd.DataFrame, claim: Claim) -> pd.Series | None:
    rows = summary[(summary.platform == claim.platform) & (summary.metric == claim.metric)]
    if claim.variant is not None:
        rows = rows[rows.variant == claim.variant]
    return None if rows.empty else rows.iloc[0]


def claims_frame(summary: pd.DataFrame, accelerator: str | None) -> pd.DataFrame:
    records = []
    for claim in CLAIMS:
        row = _row_for(summary, claim) if not summary.empty else None
        measured, verdict = "not measured in this run", "–"
        if row is not None and claim.expect_ratio is not None:
            ratio, low, high = row["ratio_to_native"], row["ratio_ci_low"], row["ratio_ci_high"]
            if not math.isnan(ratio):
                measured = f"{claim.platform} ÷ native = {ratio:.3f} [95% CI {low:.3f}–{high:.3f}], n = {int(row['n'])}"
                verdict = "consistent" if low <= claim.expect_ratio <= high else "differs on this host"
        elif row is not None:
            measured = (f"median {row['median']:.4g} {row['unit']} [95% CI {row['ci_low']:.4g}–{row['ci_high']:.4g}], "
                        f"n = {int(row['n'])}; literature: {claim.anchor}")
            verdict = "for comparison"
        if row is not None and claim.platform == "vm" and accelerator and accelerator != "kvm":
            verdict += f" — VM emulated ({accelerator.upper()}), not comparable to KVM figures"
        records.append({"claim": claim.statement, "source": claim.source, "this host": measured,
                        "verdict": verdict})
    return pd.DataFrame(records)
