"""Run the reference AOI Client with one fault injected (tests/suite/broken_clients/faults.py).

    python tests/suite/broken_clients/run.py FAULT [aoi client options...]

For ``pytest conformance --target-client "python tests/suite/broken_clients/run.py FAULT
--provisioning-url {provisioning_url} ..."``: the options are those of ``aoi client``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository, for tests.*

from tests.suite.broken_clients.faults import FAULTS


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in FAULTS:
        print(f"usage: run.py FAULT [aoi client options]; faults: {', '.join(FAULTS)}")
        return 2
    FAULTS[argv[0]]()
    from aoi.client.cli import main as client_main

    return client_main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
