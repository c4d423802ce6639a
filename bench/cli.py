"""`python -m bench`: the command line for people who live in a shell (nox sessions call the same code).

  python -m bench setup                      install packages, start libvirtd (idempotent)
  python -m bench image build [--rebuild]    build or reuse the shared root filesystem
  python -m bench image list | rm HASH|all
  python -m bench run [--platform NAME,...|all] [--scenario cpu] [--profile quick|full|<study>]
                      [--repetitions N] [--max-repetitions M] [--cv-target 0.05]
                      [--accel auto|kvm|tcg] [--resume RUN_ID] [--no-report]
  python -m bench report [RUN_ID|PATH]       (default: the latest run)
  python -m bench report --compare A B       same as `compare A B`
  python -m bench compare RUN_A RUN_B        per metric: change B vs A, its interval and a verdict
  python -m bench merge RUN... --into NAME   several runs (hosts) as one dataset, then its report
  python -m bench cleanup                    remove what crashed runs left on this host

Every error a user can cause ends as one line `isolab: error: ...` and a non-zero exit.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

from bench import hostsetup, images
from runtime.errors import IsolabError
from runtime.platform import KINDS, default_platform_names, platform_names

console = Console(highlight=False, stderr=False)
err_console = Console(highlight=False, stderr=True)


def _say(message: str) -> None:
    console.print(message, markup=False)


def cmd_setup(_args: argparse.Namespace) -> int:
    hostsetup.ensure_host(lambda msg: _say(f"setup: {msg}"))
    return 0


def cmd_image(args: argparse.Namespace) -> int:
    if args.action == "build":
        images.build(console, rebuild=args.rebuild)
    elif args.action == "list":
        images.list_images(console)
    elif args.action == "rm":
        if not args.digests:
            raise IsolabError("image rm needs an image hash or 'all'")
        images.remove(console, args.digests)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from bench.config import RunConfig, parse_selection
    from bench.results import RunStore
    from bench.runner import execute

    resume = RunStore.open(args.resume) if args.resume else None
    if resume:
        config = RunConfig.from_dict(resume.run_info()["config"])  # type: ignore[arg-type]
    else:
        config = parse_selection(args.platform, args.scenario, args.profile, args.repetitions, args.accel,
                                 args.max_repetitions, args.cv_target, args.order, args.seed)
    hostsetup.ensure_host(lambda msg: _say(f"setup: {msg}"))
    image = images.build(console)
    _say(f"run: platforms {', '.join(config.platforms)}; scenarios {', '.join(config.scenarios)}; "
         f"profile {config.profile}; {config.reps_text()}")
    result = execute(config, image, _say, resume=resume, command_line=["python", "-m", "bench", *sys.argv[1:]])
    _say(f"results: {result.store.path}")
    for line in result.skipped:
        _say(f"skipped: {line}")
    for line in result.failed:
        err_console.print(f"isolab: error: {line}", markup=False)
    if not args.no_report:
        from reporting.html import build

        _say(f"report: {build(result.store).resolve()}")
    if result.exit_code == 2:
        _say(f"interrupted: resume with 'python -m bench run --resume {result.store.run_id}'")
        return 130
    return 1 if result.failed else 0


def cmd_report(args: argparse.Namespace) -> int:
    from bench.dataset import find
    from bench.results import RunStore
    from reporting.html import build

    if args.compare:
        if args.run_id:
            raise IsolabError("report: give either RUN_ID or --compare A B, not both")
        return _compare(*args.compare)
    path = find(args.run_id) if args.run_id else RunStore.latest().path
    _say(f"report: {build(path).resolve()}")
    return 0


def _compare(first: str, second: str) -> int:
    from bench import compare
    from bench.dataset import find
    from reporting.html import reports_root

    a, b, frame = compare.compare(find(first), find(second))
    for problem in a.problems:
        _say(f"A ({a.name}): missing: {problem}")
    for problem in b.problems:
        _say(f"B ({b.name}): missing: {problem}")
    for line in compare.text_table(frame):
        _say(line)
    csv_path, html_path = compare.write_outputs(frame, a, b, reports_root())
    _say(f"compare: {html_path.resolve()} (table: {csv_path.resolve()})")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    return _compare(args.run_a, args.run_b)


def cmd_merge(args: argparse.Namespace) -> int:
    from bench.dataset import find
    from bench.merge import merge
    from bench.results import results_root
    from reporting.html import build

    into = Path(args.into) if "/" in args.into else results_root() / args.into
    data = merge([find(source) for source in args.runs], into)
    hosts = sorted(set(data.hosts.values()))
    _say(f"merged {len(data.runs)} runs from {len(hosts)} host(s) ({', '.join(hosts)}): "
         f"{len(data.samples)} samples in {into}")
    for problem in data.problems:
        _say(f"missing: {problem}")
    if not args.no_report:
        _say(f"report: {build(into).resolve()}")
    return 0


def cmd_cleanup(_args: argparse.Namespace) -> int:
    from bench.cleanup import cleanup_host

    removed = cleanup_host()
    for item in removed:
        _say(f"removed {item}")
    _say(f"cleanup: {len(removed)} leftover(s) removed" if removed else "cleanup: nothing to remove")
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m bench", description="isolab: platforms of every kind ("
                                  f"{', '.join(KINDS)}) measured side by side on this host")
    sub = top.add_subparsers(dest="command", required=True)
    sub.add_parser("setup", help="install packages and start libvirtd").set_defaults(func=cmd_setup)

    image = sub.add_parser("image", help="the shared root filesystem")
    image.add_argument("action", choices=["build", "list", "rm"])
    image.add_argument("digests", nargs="*")
    image.add_argument("--rebuild", action="store_true")
    image.set_defaults(func=cmd_image)

    run = sub.add_parser("run", help="measure platform × scenario cells and write the report")
    run.add_argument("--platform", help="comma-separated, or `all` for every registered platform "
                     f"({', '.join(platform_names())}; default: {','.join(default_platform_names())})")
    run.add_argument("--scenario", help="comma-separated (default: all)")
    run.add_argument("--profile", default="quick", help="quick (CI), full (papers), or a study profile "
                     "(bench/profiles/<name>.toml, e.g. felter2015: a paper's workloads, its table in the report)")
    run.add_argument("--repetitions", type=int, help="minimum repetitions per cell (default: per profile)")
    run.add_argument("--max-repetitions", type=int,
                     help="extend up to this many while CV > target (default: per profile, or 2 x --repetitions)")
    run.add_argument("--cv-target", type=float, default=0.05, help="CV that ends extension (default 0.05)")
    run.add_argument("--accel", default="auto",
                     help="hardware accelerator, for the platforms that take one: auto, kvm or tcg")
    run.add_argument("--order", default="interleaved", choices=["interleaved", "sequential"],
                     help="interleaved (default): repetition by repetition across platforms in random order, "
                          "idle instances frozen; sequential: one cell after the other")
    run.add_argument("--seed", type=int, default=20261128, help="seed of the interleaved block orders")
    run.add_argument("--resume", metavar="RUN_ID", help="continue an interrupted run")
    run.add_argument("--no-report", action="store_true")
    run.set_defaults(func=cmd_run)

    report = sub.add_parser("report", help="write reports/<run-id>.html")
    report.add_argument("run_id", nargs="?")
    report.add_argument("--compare", nargs=2, metavar=("RUN_A", "RUN_B"), help="compare two runs instead")
    report.set_defaults(func=cmd_report)

    compare = sub.add_parser("compare", help="per metric: the change from RUN_A to RUN_B and a verdict")
    compare.add_argument("run_a")
    compare.add_argument("run_b")
    compare.set_defaults(func=cmd_compare)

    merge = sub.add_parser("merge", help="several runs (e.g. from several hosts) as one dataset")
    merge.add_argument("runs", nargs="+", metavar="RUN")
    merge.add_argument("--into", required=True, help="name (under the results directory) or path of the dataset")
    merge.add_argument("--no-report", action="store_true")
    merge.set_defaults(func=cmd_merge)

    sub.add_parser("cleanup", help="remove leftovers of crashed runs").set_defaults(func=cmd_cleanup)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except (IsolabError, hostsetup.SetupError) as exc:
        err_console.print(f"isolab: error: {exc}", markup=False)
        return 2
    except KeyboardInterrupt:
        err_console.print("isolab: interrupted", markup=False)
        return 130
