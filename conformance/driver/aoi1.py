"""The suite's AOI-1 driver: the suite playing an app on the AOI Client's loopback interface.

The same WebSocket client as AOI-2 (:mod:`conformance.driver.aoi2`), offering the
subprotocol ``aoi-app.v1`` and judging what it receives against ``schemas/aoi1/``. Each
frame received also wakes whoever waits on the whole stage (servers, apps, provisioning).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from conformance import contract
from conformance.driver.aoi2 import Aoi2Connection
from conformance.driver.frames import Frame

SUBPROTOCOL = "aoi-app.v1"


class Aoi1Connection(Aoi2Connection):
    contract_errors = staticmethod(contract.aoi1_errors)

    def __init__(self, *args: Any, on_change: Callable[[], None], **kwargs: Any) -> None:
        kwargs.setdefault("subprotocols", (SUBPROTOCOL,))
        super().__init__(*args, **kwargs)
        self.on_change = on_change

    @property
    def inbox(self) -> list[Frame]:
        """Every frame received so far; read it only in the portal's thread."""
        return self._state.inbox

    def _changed(self) -> None:
        super()._changed()
        self.on_change()
