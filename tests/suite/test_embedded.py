"""The embedded run's lab: started as ``python -m aoi lab``, its failures reported."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from conformance.embedded import EmbeddedError, Lab


def test_a_lab_whose_servers_exit_at_once_is_reported_with_their_output(tmp_path: Path) -> None:
    exits = (sys.executable, "-c", "import sys; print('cannot bind'); sys.exit(3)")
    lab = Lab(tmp_path / "lab", tmp_path / "lab.log", profiles=["main"], server_command=exits)
    try:
        with pytest.raises(EmbeddedError, match="exited with 1") as caught:
            lab.start(timeout=60)
    finally:
        lab.stop()
    assert "the main server exited with 3" in str(caught.value)
    assert "cannot bind" in str(caught.value)
    # The port may have been taken meanwhile: the lab tried three times, on new ports.
    log = (tmp_path / "lab" / "logs" / "main.log").read_text(encoding="utf-8")
    assert log.splitlines().count("cannot bind") == 3
