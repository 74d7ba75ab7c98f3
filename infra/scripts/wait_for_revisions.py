"""Wait until every Dagster container app runs the deployed image in a ready revision.

    python infra/scripts/wait_for_revisions.py --resource-group RG --image REF APP [APP ...]

The Bicep deployment rolls the apps (a new image reference is a new revision in single-revision
mode); this waits, with a bound, until the latest revision of each app is also the latest ready
one, and fails if one was not updated or its revision failed. Reads apps with `az containerapp
show`, so it needs a signed-in Azure CLI.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

READY, PENDING, FAILED = "ready", "pending", "failed"


def revision_state(app: Mapping[str, Any], image: str) -> tuple[str, str]:
    """(state, reason) of one app as `az containerapp show` describes it."""
    properties = app.get("properties") or {}
    images = [c.get("image") for c in (properties.get("template") or {}).get("containers", [])]
    if not images or any(found != image for found in images):
        return FAILED, f"runs {', '.join(map(str, images)) or 'no container'}, not {image}"
    if properties.get("provisioningState") == "Failed":
        return FAILED, "provisioning failed"
    latest = properties.get("latestRevisionName")
    if latest and latest == properties.get("latestReadyRevisionName"):
        return READY, f"revision {latest} ready"
    return PENDING, f"revision {latest} not ready yet"


def show_app(resource_group: str, name: str) -> dict[str, Any]:
    """The app as JSON, through the Azure CLI the workflow signed in."""
    command = ["az", "containerapp", "show", "-g", resource_group, "-n", name, "-o", "json"]
    result = subprocess.run(command, check=True, capture_output=True, text=True)
    return dict(json.loads(result.stdout))


def wait(
    apps: list[str],
    image: str,
    show: Callable[[str], Mapping[str, Any]],
    timeout: float,
    interval: float = 15,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, tuple[str, str]]:
    """Poll until no app is pending or the timeout passes; returns the last state of each app."""
    deadline = clock() + timeout
    while True:
        states = {name: revision_state(show(name), image) for name in apps}
        if all(state != PENDING for state, _ in states.values()) or clock() >= deadline:
            return states
        sleep(interval)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resource-group", required=True)
    parser.add_argument("--image", required=True, help="the image reference given to Bicep")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("apps", nargs="+", help="container app names (output dagsterAppNames)")
    args = parser.parse_args(argv)
    states = wait(
        args.apps, args.image, lambda name: show_app(args.resource_group, name), args.timeout
    )
    for name, (state, reason) in states.items():
        print(f"{name}: {state}: {reason}")
    return 0 if all(state == READY for state, _ in states.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
