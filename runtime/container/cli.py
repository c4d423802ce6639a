"""`python -m runtime ...`: run, ps, exec, kill, rm, commit, diff, images, rmi, cleanup.

Errors are one line on stderr and exit status 125 (127 for a command missing in the image), with
nothing left behind. `run` streams the workload's stdout/stderr, forwards signals to it, and exits
with its exit status (128+N when it died of signal N).
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from runtime.errors import IsolabError
from runtime.naming import STATE_ROOT
from runtime.spec import DEFAULT_STORAGE_DRIVER, SECCOMP_PROFILES, InstanceSpec, parse_rate, parse_size

FORWARD = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)


def _store():  # type: ignore[no-untyped-def]
    from runtime.container.layers import LayerStore
    from runtime.image.build import ensure_image

    return LayerStore(ensure_image().rootfs)


def _spec(args: argparse.Namespace) -> InstanceSpec:
    def size(value: str | None, what: str) -> int | None:
        return None if value is None else parse_size(value, what)

    def number(value: str | None, what: str) -> int | None:
        return None if value is None else parse_size(value, what)  # plain integers are accepted too

    return InstanceSpec(
        cpus=args.cpus, cpuset=args.cpuset, cpu_shares=args.cpu_shares,
        memory=size(args.memory, "--memory"), memory_swap=size(args.memory_swap, "--memory-swap"),
        io_read_bps=size(args.io_read_bps or args.io_bps, "--io-read-bps"),
        io_write_bps=size(args.io_write_bps or args.io_bps, "--io-write-bps"),
        io_read_iops=number(args.io_read_iops, "--io-read-iops"),
        io_write_iops=number(args.io_write_iops, "--io-write-iops"),
        pids_max=number(args.pids_max, "--pids-max"), network=args.net,
        bandwidth=None if args.bandwidth is None else parse_rate(args.bandwidth, "--bandwidth"),
        hostname=args.hostname, env=dict(e.split("=", 1) for e in args.env), volume=args.volume,
        seccomp=args.seccomp, userns=getattr(args, "userns", False),
        disk_quota=size(getattr(args, "disk_quota", None), "--disk-quota"),
        storage_driver=getattr(args, "storage_driver", DEFAULT_STORAGE_DRIVER),
    )


def cmd_run(args: argparse.Namespace) -> int:
    from runtime.container.container import Container

    if not args.command:
        raise IsolabError("run: no command given (use: run [options] -- CMD ...)")
    spec = _spec(args)
    layers = _store().resolve(args.image)
    container = Container(spec, layers, args.command, init=not args.no_init, image_name=args.image,
                          volatile=args.rm and not args.durable)
    started = False

    def forward(signum: int, _frame: FrameType | None) -> None:
        if not started:
            raise KeyboardInterrupt
        container.kill(signum)

    for sig in FORWARD:
        signal.signal(sig, forward)
    try:
        container.create()
        if args.cidfile:
            Path(args.cidfile).write_text(container.instance_id + "\n")
        container.start()
        started = True
        code = container.wait()
    except BaseException:
        container.destroy()
        raise
    if args.rm:
        container.destroy()
    else:
        container.stop()
        container.save_state()
    return code if code >= 0 else 128 - code


def cmd_ps(args: argparse.Namespace) -> int:
    from runtime.container.container import Container

    rows = []
    for path in sorted(STATE_ROOT.glob("ct-*")) if STATE_ROOT.is_dir() else []:
        try:
            c = Container.load(path.name)
        except IsolabError:
            continue
        if c.status == "running" or args.all:
            command = " ".join(c.argv or ["(init)"])
            rows.append((c.instance_id, c.status, str(c.pid or "-"), c.image_name, command))
    if args.quiet:
        print("\n".join(r[0] for r in rows))
        return 0
    print(f"{'ID':<12} {'STATUS':<8} {'PID':>7}  {'IMAGE':<12} COMMAND")
    for row in rows:
        print(f"{row[0]:<12} {row[1]:<8} {row[2]:>7}  {row[3]:<12} {row[4]}")
    return 0


def cmd_exec(args: argparse.Namespace) -> int:
    from runtime.container.container import Container

    container = Container.load(args.id)
    try:
        proc = container.popen(args.command, stdout=None, stderr=None, stdin=None, text=False)
    except FileNotFoundError:
        print(f"isolab: {args.command[0]}: command not found in the image", file=sys.stderr)
        return 127
    code = proc.wait()
    return code if code >= 0 else 128 - code


def cmd_kill(args: argparse.Namespace) -> int:
    from runtime.container.container import Container

    name = args.signal.upper().removeprefix("SIG")
    sig = int(name) if name.isdigit() else int(signal.Signals["SIG" + name])
    Container.load(args.id).kill(sig)
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    from runtime.container.container import Container

    for instance_id in args.ids:
        container = Container.load(instance_id)
        if container.status == "running" and not args.force:
            raise IsolabError(f"rm: container {instance_id} is running (use -f to kill it)")
        container.destroy()
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    from runtime.container.container import Container

    container = Container.load(args.id)
    for kind, path in container.diff():
        print(kind, path)
    return 0


def cmd_commit(args: argparse.Namespace) -> int:
    from runtime.container.container import Container

    container = Container.load(args.id)
    layer = _store().commit(container.write_layer, container.image_name, args.name, comment=args.message,
                            fix_ids=container.owners_to_image())
    print(layer.name)
    return 0


def cmd_images(_args: argparse.Namespace) -> int:
    from runtime.container.container import dir_usage_bytes

    print(f"{'NAME':<20} {'PARENT':<20} {'CREATED':<20} SIZE")
    for layer in _store().list():
        size = "(shared rootfs)" if layer.parent is None else f"{dir_usage_bytes(layer.path) / 1e6:.1f} MB"
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(layer.created))
        print(f"{layer.name:<20} {layer.parent or '-':<20} {created:<20} {size}")
    return 0


def cmd_rmi(args: argparse.Namespace) -> int:
    store = _store()
    for name in args.names:
        store.remove(name)
    return 0


def cmd_cleanup(args: argparse.Namespace) -> int:
    from runtime.sweep import sweep

    for line in sweep(everything=args.all):
        print(f"removed {line}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m runtime", description="isolab's container runtime")
    sub = p.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="run a command in a new container")
    run.add_argument("--image", default="base")
    run.add_argument("--memory")
    run.add_argument("--memory-swap")
    run.add_argument("--cpus", type=float)
    run.add_argument("--cpuset")
    run.add_argument("--cpu-shares", type=int)
    run.add_argument("--pids-max")
    run.add_argument("--io-bps", help="read and write bytes/s on the writable layer's disk")
    run.add_argument("--io-read-bps")
    run.add_argument("--io-write-bps")
    run.add_argument("--io-read-iops")
    run.add_argument("--io-write-iops")
    run.add_argument("--net", default="none", help="none, host, bridge or nat (ports published on the suite bridge)")
    run.add_argument("--bandwidth", help="tc quota on the container's veth, e.g. 100mbit")
    run.add_argument("--hostname", default="isolab")
    run.add_argument("--volume", action="store_true",
                     help="a data volume at /mnt: a host directory next to the writable layer, removed with it")
    run.add_argument("--disk-quota", help="hard limit on what the container writes to its writable layer and "
                     "volume together, e.g. 1G (a write past it fails with ENOSPC)")
    run.add_argument("--seccomp", default="default", choices=SECCOMP_PROFILES,
                     help="default: Docker's default seccomp profile; unconfined: no syscall filter")
    run.add_argument("-e", "--env", action="append", default=[], help="KEY=VALUE")
    run.add_argument("--rm", action="store_true",
                     help="remove the container and its layer on exit (the layer is then mounted 'volatile')")
    run.add_argument("--durable", action="store_true", help="with --rm: keep fsync semantics on the layer")
    run.add_argument("--no-init", action="store_true", help="run the command itself as pid 1")
    run.add_argument("--cidfile", help="write the container id to this file")
    run.add_argument("--userns", action="store_true", help="root in the container is an unprivileged host uid "
                     "(uids/gids 0-65535 -> 100000-165535; idmapped image layers)")
    run.add_argument("--storage-driver", default=DEFAULT_STORAGE_DRIVER,
                     help="how the root is made from the image: overlay (default), btrfs (snapshots), vfs "
                          "(full copies) or devicemapper (dm-thin, where the kernel has it)")
    run.add_argument("command", nargs=argparse.REMAINDER)
    run.set_defaults(func=cmd_run)
    ps = sub.add_parser("ps", help="list containers")
    ps.add_argument("-a", "--all", action="store_true")
    ps.add_argument("-q", "--quiet", action="store_true")
    ps.set_defaults(func=cmd_ps)
    ex = sub.add_parser("exec", help="run a command in a running container")
    ex.add_argument("id")
    ex.add_argument("command", nargs=argparse.REMAINDER)
    ex.set_defaults(func=cmd_exec)
    kill = sub.add_parser("kill", help="send a signal to a container's pid 1")
    kill.add_argument("-s", "--signal", default="TERM")
    kill.add_argument("id")
    kill.set_defaults(func=cmd_kill)
    rm = sub.add_parser("rm", help="remove containers")
    rm.add_argument("-f", "--force", action="store_true")
    rm.add_argument("ids", nargs="+")
    rm.set_defaults(func=cmd_rm)
    df = sub.add_parser("diff", help="list added (A), changed (C) and deleted (D) paths")
    df.add_argument("id")
    df.set_defaults(func=cmd_diff)
    cm = sub.add_parser("commit", help="turn a container's writable layer into an image")
    cm.add_argument("-m", "--message", default="")
    cm.add_argument("id")
    cm.add_argument("name")
    cm.set_defaults(func=cmd_commit)
    sub.add_parser("images", help="list images").set_defaults(func=cmd_images)
    rmi = sub.add_parser("rmi", help="remove committed images")
    rmi.add_argument("names", nargs="+")
    rmi.set_defaults(func=cmd_rmi)
    cl = sub.add_parser("cleanup", help="remove what crashed runs left")
    cl.add_argument("--all", action="store_true", help="also containers whose runtime still runs")
    cl.set_defaults(func=cmd_cleanup)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if getattr(args, "command", None) and args.command[0] == "--":
        args.command = args.command[1:]
    try:
        return int(args.func(args))
    except IsolabError as exc:
        print(f"isolab: {exc}", file=sys.stderr)
        return 127 if "command not found in the image" in str(exc) else 125
    except KeyboardInterrupt:
        print("isolab: interrupted", file=sys.stderr)
        return 130
