"""HPC Challenge (Debian's `hpcc`): HPL (a Linpack dense solve, GFLOPS), STREAM Copy/Scale/Add/Triad
(GB/s) and RandomAccess (GUP/s), the kernels Felter et al. (ISPASS 2015) measured with Linpack, STREAM
and RandomAccess.

One `hpcc` process (an MPI singleton, P = Q = 1) per repetition, in a scratch directory of the instance:
the input file `hpccinf.txt` is written from the profile (`n`: HPL's matrix order, which also sizes the
STREAM arrays and the RandomAccess table; `nb`: HPL's block size), and the figures are read from the
summary block of `hpccoutf.txt` (`key=value` lines): HPL_Tflops, SingleSTREAM_<kernel>,
SingleRandomAccess_GUPs. A run whose summary says `Failure=1` or lacks a figure is a ScenarioError.
Not a default scenario: study profiles and `--scenario hpcc` select it.
"""

from __future__ import annotations

from runtime.platform import Instance
from runtime.spec import InstanceSpec, parse_size
from scenarios.base import (
    DAY_S,
    MEMORY_BUS_MB_S,
    MEMORY_BUS_WHY,
    Range,
    RawSink,
    Sample,
    ScenarioError,
    check,
    require_tools,
)

NAME = "hpcc"
DESCRIPTION = "HPC Challenge: HPL GFLOPS, STREAM Copy/Scale/Add/Triad GB/s, RandomAccess GUP/s (one process)"
TOOLS = ("hpcc", "cat", "mkdir", "rm")
STREAM_KERNELS = ("Copy", "Scale", "Add", "Triad")
METRICS: dict[str, tuple[str, tuple[str, ...]]] = {
    "hpl_gflops": ("GFLOPS", ("n",)),
    "stream_bandwidth": ("GB/s", ("kernel", "n")),
    "randomaccess_gups": ("GUP/s", ("n",)),
}
RANGES: dict[str, Range] = {
    "hpl_gflops": Range("higher", 1e6, "a petaflop from one process"),
    "stream_bandwidth": Range("higher", MEMORY_BUS_MB_S / 1e3, MEMORY_BUS_WHY),
    "randomaccess_gups": Range("higher", 1e3, "a thousand billion random updates a second"),
}
PRECISION_METRICS = ("hpl_gflops", "stream_bandwidth", "randomaccess_gups")
WORK_DIR = "isolab-hpcc"
# Open MPI refuses to run as root unless told; the instances run the workload as root.
MPI_ENV = "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1"

PROFILES: dict[str, dict[str, object]] = {
    "quick": {"n": 2000, "nb": 80, "instance_memory": None},
    "full": {"n": 8000, "nb": 80, "instance_memory": "2G"},
}

# HPL.dat layout as hpcc reads it (hpcc's example input, one process: P = Q = 1); {n} and {nb} from the profile.
_INPUT = """HPLinpack benchmark input file
Innovative Computing Laboratory, University of Tennessee
HPL.out      output file name (if any)
8            device out (6=stdout,7=stderr,file)
1            # of problems sizes (N)
{n}         Ns
1            # of NBs
{nb}           NBs
0            PMAP process mapping (0=Row-,1=Column-major)
1            # of process grids (P x Q)
1            Ps
1            Qs
16.0         threshold
1            # of panel fact
2            PFACTs (0=left, 1=Crout, 2=Right)
1            # of recursive stopping criterium
4            NBMINs (>= 1)
1            # of panels in recursion
2            NDIVs
1            # of recursive panel fact.
1            RFACTs (0=left, 1=Crout, 2=Right)
1            # of broadcast
1            BCASTs (0=1rg,1=1rM,2=2rg,3=2rM,4=Lng,5=LnM)
1            # of lookahead depth
1            DEPTHs (>=0)
2            SWAP (0=bin-exch,1=long,2=mix)
64           swapping threshold
0            L1 in (0=transposed,1=no-transposed) form
0            U  in (0=transposed,1=no-transposed) form
1            Equilibration (0=no,1=yes)
8            memory alignment in double (> 0)
##### This line (no. 32) is ignored (it serves as a separator). ######
0                      		Number of additional problem sizes for PTRANS
1200 10000 30000        	values of N
0                       	number of additional blocking sizes for PTRANS
40 9 8 13 13 20 16 32 64       	values of NB
"""


def instance_spec(params: dict[str, object]) -> InstanceSpec:
    memory = params.get("instance_memory")
    return InstanceSpec(memory=parse_size(str(memory), "instance_memory") if memory else None)


def input_text(params: dict[str, object]) -> str:
    n, nb = int(params["n"]), int(params["nb"])  # type: ignore[call-overload]
    if n < 100 or nb < 1 or nb > n:
        raise ScenarioError(f"hpcc: invalid n {n} / nb {nb}: need n >= 100 and 1 <= nb <= n")
    return _INPUT.format(n=n, nb=nb)


def parse_summary(text: str) -> dict[str, str]:
    """The key=value lines of hpccoutf.txt's summary block ('Begin of Summary section.' to its end)."""
    begin, end = text.find("Begin of Summary section."), text.find("End of Summary section.")
    if begin < 0 or end < begin:
        raise ScenarioError("hpcc: hpccoutf.txt has no complete summary section (did hpcc finish?)")
    pairs = {}
    for line in text[begin:end].splitlines()[1:]:
        key, sep, value = line.partition("=")
        if sep:
            pairs[key.strip()] = value.strip()
    return pairs


def samples_from(summary: dict[str, str], n: int) -> list[Sample]:
    if summary.get("Success") != "1" or summary.get("Failure", "0") != "0":
        raise ScenarioError(f"hpcc: the run reports Success={summary.get('Success')} "
                            f"Failure={summary.get('Failure')} (a residual check failed)")

    def figure(key: str) -> float:
        try:
            return float(summary[key])
        except (KeyError, ValueError) as exc:
            raise ScenarioError(f"hpcc: summary has no usable {key} ({summary.get(key)!r})") from exc

    samples = [Sample("hpl_gflops", figure("HPL_Tflops") * 1e3, "GFLOPS", {"n": n})]
    samples += [Sample("stream_bandwidth", figure(f"SingleSTREAM_{k}"), "GB/s", {"kernel": k, "n": n})
                for k in STREAM_KERNELS]
    samples.append(Sample("randomaccess_gups", figure("SingleRandomAccess_GUPs"), "GUP/s", {"n": n}))
    return samples


def _dir(instance: Instance) -> str:
    return f"{instance.scratch_dir.rstrip('/')}/{WORK_DIR}"


def prepare(instance: Instance, params: dict[str, object]) -> None:
    require_tools(instance, TOOLS)
    input_text(params)


def run(instance: Instance, params: dict[str, object], raw: RawSink) -> list[Sample]:
    work = _dir(instance)
    script = f'rm -rf "$1" && mkdir -p "$1" && cd "$1" && printf %s "$2" > hpccinf.txt && {MPI_ENV} hpcc'
    try:
        result = instance.exec(["sh", "-c", script, "sh", work, input_text(params)], timeout=DAY_S / 12)
        raw("hpcc-stdout.txt", result.stdout + result.stderr)
        check(result, instance)
        text = check(instance.exec(["cat", f"{work}/hpccoutf.txt"], timeout=60), instance).stdout
        raw("hpccoutf.txt", text)
        return samples_from(parse_summary(text), int(params["n"]))  # type: ignore[call-overload]
    finally:
        cleanup(instance, params)


def cleanup(instance: Instance, params: dict[str, object]) -> None:
    instance.exec(["rm", "-rf", _dir(instance)], timeout=60)
