"""A local stand-in for APIM in front of Azure OpenAI: the gateway and an Azure OpenAI simulator.

`chargeback gateway` wires `add_gateway_arguments`/`run_gateway`; this module imports nothing
heavy so the CLI's parser stays fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = [
    "add_gateway_arguments",
    "add_simulator_arguments",
    "run_gateway",
    "run_simulator",
]


def add_gateway_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `chargeback gateway`."""
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument(
        "--mode",
        choices=("buffered", "passthrough"),
        default="buffered",
        help="buffered: exact usage from the relayed body (include_usage injected); "
        "passthrough: streams relayed without keeping the body, gateway estimates billed",
    )
    parser.add_argument(
        "--upstream",
        help="Azure OpenAI base URL, or 'simulator' "
        "(default: $AZURE_OPENAI_ENDPOINT, else the built-in simulator)",
    )
    parser.add_argument("--upstream-key", help="upstream api-key (default $AZURE_OPENAI_API_KEY)")
    parser.add_argument(
        "--subscriptions",
        type=Path,
        help="CSV or JSON of key,subscription_id,subscription_name,product_id,product_name "
        "(default: the shipped demo keys, e.g. demo-key-marketing)",
    )
    parser.add_argument(
        "--forwarder-url",
        help="POST envelopes here (e.g. http://127.0.0.1:7071/api/envelopes); "
        "default: the forwarder core in-process into CHARGEBACK_STORE",
    )
    parser.add_argument("--backend-id", help="backend id recorded in envelopes")
    parser.add_argument(
        "--simulator-port", type=int, default=0, help="port of the built-in simulator (default any)"
    )
    parser.add_argument(
        "--backend",
        action="append",
        default=[],
        metavar="ID=URL[,priority=N][,weight=N][,fail-rate=R][,fail-status=S]",
        help="a backend pool member, repeatable (replaces --upstream): priority 1 is tried first, "
        "weight splits a priority; URL 'simulator' starts one in-process, failing a fail-rate "
        "share of calls with fail-status (e.g. aoai-eastus-ptu=simulator,priority=1,fail-rate=0.5)",
    )
    parser.add_argument(
        "--trip-after", type=int, default=1, help="failures (429/5xx) that open a backend's breaker"
    )
    parser.add_argument(
        "--trip-interval", type=float, default=10.0, help="seconds the failures are counted over"
    )
    parser.add_argument(
        "--trip-seconds",
        type=float,
        default=10.0,
        help="seconds a breaker stays open when the backend sent no Retry-After",
    )


def add_simulator_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of the stand-alone Azure OpenAI simulator."""
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--api-key", help="require this api-key (default: accept any)")
    parser.add_argument(
        "--frame-delay", type=float, default=0.02, help="seconds between SSE frames"
    )
    parser.add_argument(
        "--fail-status", type=int, default=429, help="status of the failures below (4xx/5xx)"
    )
    parser.add_argument("--fail-next", type=int, default=0, help="fail the first N calls")
    parser.add_argument(
        "--fail-rate", type=float, default=0.0, help="then fail this share of calls (0 to 1)"
    )


def run_gateway(args: argparse.Namespace) -> int:
    """Serve the gateway with parsed `add_gateway_arguments` options until interrupted."""
    from chargeback_pipeline.gateway.gateway import BackendSpec, BreakerSettings, serve_gateway

    serve_gateway(
        args.host,
        args.port,
        args.upstream,
        args.mode,
        upstream_key=args.upstream_key,
        subscriptions=args.subscriptions,
        forwarder_url=args.forwarder_url,
        backend_id=args.backend_id,
        simulator_port=args.simulator_port,
        backends=[BackendSpec.parse(spec) for spec in args.backend],
        breaker=BreakerSettings(args.trip_after, args.trip_interval, args.trip_seconds),
    )
    return 0


def run_simulator(args: argparse.Namespace) -> int:
    """Serve the simulator with parsed `add_simulator_arguments` options until interrupted."""
    from chargeback_pipeline.gateway.simulator import Failures, serve_simulator

    failures = Failures(args.fail_status, args.fail_next, args.fail_rate)
    serve_simulator(args.host, args.port, args.api_key, args.frame_delay, failures)
    return 0
