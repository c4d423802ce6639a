"""The claims table: what the literature says, with its source, next to what this host measured.

Each claim names the kind of platform it is about (runtime.platform.KINDS), the metric (and variant)
it is checked against and how: a ratio to the baseline whose CI should include a value, or an anchor
figure to set a median beside. It is checked on every platform of that kind that ran. The verdict is
mechanical and says only whether this host's interval agrees; the reader judges the rest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from bench import stats
from reporting import platforms as platform_infos
from runtime.platform import KIND_CONTAINER, KIND_VM, PlatformInfo

FELTER = ("W. Felter, A. Ferreira, R. Rajamony, J. Rubio, \"An Updated Performance Comparison of Virtual "
          "Machines and Linux Containers\", IEEE ISPASS 2015 (IBM Research Report RC25482, 2014)")
FIRECRACKER = ("A. Agache et al., \"Firecracker: Lightweight Virtualization for Serverless Applications\", "
               "USENIX NSDI 2020")
DESIGN_NOTES = "isolab design notes, measured on this workplace's machines (hyperfine, 100 runs), 2026-11"


@dataclass(frozen=True)
class Claim:
    statement: str
    source: str
    kind: str  # the kind of platform the claim is about
    metric: str
    variant: str | None = None  # None: the first variant present
    expect_ratio: float | None = None  # the claim holds if the ratio-to-baseline CI includes this
    anchor: str | None = None  # a figure to set beside this host's median


CLAIMS = (
    Claim("Containers add no measurable CPU overhead: throughput equals native.", FELTER,
          KIND_CONTAINER, "sysbench_cpu_events_per_s", "threads=1", expect_ratio=1.0),
    Claim("Containers add no measurable CPU overhead (matrix kernel, Linpack-like).", FELTER,
          KIND_CONTAINER, "stressng_matrix_bogo_ops_per_s", "method=prod,threads=1", expect_ratio=1.0),
    Claim("A tuned KVM guest comes close to native CPU throughput.", FELTER,
          KIND_VM, "sysbench_cpu_events_per_s", "threads=1", expect_ratio=1.0),
    Claim("QEMU boots a guest in 244 ms (default firmware) or 214 ms (qboot), hardware KVM.", FIRECRACKER,
          KIND_VM, "startup_ready_s", "mode=serial", anchor="0.244 s / 0.214 s"),
    Claim("An OCI runtime starts /bin/true in a container in 16 ms (crun) or 29 ms (runc), median.", DESIGN_NOTES,
          KIND_CONTAINER, "startup_ready_s", "mode=serial", anchor="0.016 s / 0.029 s"),
)


def _row_for(summary: pd.DataFrame, platform: str, claim: Claim) -> pd.Series | None:
    rows = summary[(summary.platform == platform) & (summary.metric == claim.metric)]
    if claim.variant is not None:
        rows = rows[rows.variant == claim.variant]
    return None if rows.empty else rows.iloc[0]


def claims_frame(summary: pd.DataFrame, infos: dict[str, PlatformInfo]) -> pd.DataFrame:
    """One row per claim and platform of the claim's kind that ran (one 'not measured' row if none did)."""
    base = platform_infos.baseline(infos)
    records = []
    for claim in CLAIMS:
        candidates = [info for info in infos.values() if info.kind == claim.kind and not info.baseline]
        for info in candidates or [None]:
            row = _row_for(summary, info.name, claim) if info is not None and not summary.empty else None
            measured, verdict = "not measured in this run", "–"
            if row is not None and claim.expect_ratio is not None:
                ratio, low, high = row["ratio_to_native"], row["ratio_ci_low"], row["ratio_ci_high"]
                if not math.isnan(ratio):
                    level = stats.format_level(float(row["ratio_ci_level"]))
                    measured = (f"{info.name} ÷ {base} = {ratio:.3f} [{low:.3f}–{high:.3f}, {level} interval], "
                                f"n = {int(row['n'])}")
                    verdict = "consistent" if low <= claim.expect_ratio <= high else "differs on this host"
            elif row is not None:
                measured = (f"median {row['median']:.4g} {row['unit']} [{row['ci_low']:.4g}–"
                            f"{row['ci_high']:.4g}, {stats.format_level(float(row['ci_level']))} interval], "
                            f"n = {int(row['n'])}; literature: {claim.anchor}")
                verdict = "for comparison"
            if row is not None and info is not None and info.emulated:
                verdict += f" — {info.name} emulated ({info.mechanism}), not comparable to KVM figures"
            records.append({"claim": claim.statement, "source": claim.source,
                            "platform": info.label if info is not None else f"({claim.kind}: none ran)",
                            "this host": measured, "verdict": verdict})
    return pd.DataFrame(records)
