"""`python -m chargeback_pipeline.gateway gateway|simulator [options]`, same as the CLI."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from chargeback_pipeline.gateway import (
    add_gateway_arguments,
    add_simulator_arguments,
    run_gateway,
    run_simulator,
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chargeback_pipeline.gateway")
    commands = parser.add_subparsers(dest="command", required=True)
    gateway = commands.add_parser("gateway", help="the gateway (APIM policies on one machine)")
    add_gateway_arguments(gateway)
    gateway.set_defaults(handler=run_gateway)
    simulator = commands.add_parser("simulator", help="an Azure OpenAI simulator")
    add_simulator_arguments(simulator)
    simulator.set_defaults(handler=run_simulator)
    args = parser.parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
