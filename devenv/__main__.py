"""python -m devenv up|down|restart|status|logs [mariadb|kafka] -- see devenv/__init__.py."""

from __future__ import annotations

import argparse
import sys
import time

from devenv import ServiceError, kafka, lock, log, mariadb, tail

SERVICES = {"mariadb": mariadb, "kafka": kafka}


def up(names: list[str]) -> None:
    """Start the named services (default both), reusing running ones. Raises ServiceError."""
    with lock():
        for name in names:
            SERVICES[name].start()


def down(names: list[str]) -> None:
    with lock():
        # kafka first: it is usually the one a running cdc-bridge is talking to last
        for name in sorted(names, key=lambda n: n != "kafka"):
            SERVICES[name].stop()


def status(names: list[str]) -> bool:
    ok_all = True
    for name in names:
        ok, text = SERVICES[name].status()
        ok_all &= ok
        print(f"{name:8} {'UP  ' if ok else 'DOWN'} {text}")
    return ok_all


def logs(names: list[str], lines: int) -> None:
    files = {"mariadb": [mariadb.LOG_FILE], "kafka": [kafka.SERVER_LOG, kafka.STDOUT_LOG]}
    for name in names:
        for path in files[name]:
            print(f"==> {path} <==")
            print(tail(path, lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devenv", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "restart", "status", "logs"])
    parser.add_argument("services", nargs="*", metavar="SERVICE", help="mariadb and/or kafka (default: both)")
    parser.add_argument("-n", "--lines", type=int, default=50, help="lines per log for `logs`")
    args = parser.parse_args(argv)
    for name in args.services:  # not argparse choices: with nargs="*" they reject the empty default
        if name not in SERVICES:
            parser.error(f"unknown service {name!r} (choose from {', '.join(SERVICES)})")
    names = args.services or list(SERVICES)
    try:
        if args.command == "up":
            t0 = time.monotonic()
            up(names)
            log(f"up in {time.monotonic() - t0:.1f}s")
            return 0 if status(names) else 1
        if args.command == "down":
            down(names)
            return 0
        if args.command == "restart":
            down(names)
            up(names)
            return 0 if status(names) else 1
        if args.command == "status":
            return 0 if status(names) else 1
        logs(names, args.lines)
        return 0
    except ServiceError as exc:
        log(f"error: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
