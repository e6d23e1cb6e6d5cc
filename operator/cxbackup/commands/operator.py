"""`cxbackup operator`: run the operator (all namespaces by default, or the ones given)."""

from __future__ import annotations

import argparse

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_text: str) -> None:
    p = sub.add_parser(name, help=help_text, description=help_text)
    p.add_argument("--namespace", "-n", action="append", default=[], help="watch only this namespace (repeatable)")
    p.add_argument("--metrics-port", type=int, default=8080, help="port of /metrics (default 8080)")
    p.add_argument("--health-port", type=int, default=8081, help="port of /healthz (default 8081)")
    p.add_argument("--bind-address", default="0.0.0.0", help="address of the metrics and probe servers")  # noqa: S104
    p.add_argument("--peering-name", default="cxbackup", help="kopf peering object (default cxbackup)")
    p.add_argument("--standalone", action="store_true", help="no peering: only for a single replica (tests, laptops)")
    p.add_argument("--plain-logs", action="store_true", help="human-readable logs instead of JSON")
    p.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cxbackup.controller.main import OperatorOptions, run_operator

    return run_operator(
        OperatorOptions(
            namespaces=args.namespace,
            metrics_port=args.metrics_port,
            health_port=args.health_port,
            bind_address=args.bind_address,
            peering_name=args.peering_name,
            standalone=args.standalone,
            json_logs=not args.plain_logs,
            verbose=args.verbose,
        )
    )
