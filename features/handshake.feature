Feature: handshake: WebSocket upgrade, protocol version and handshake timeout
  AOI-2 is a WebSocket at /aoi with the subprotocol aoi.v1; hello carries the protocol
  version; a connection without a valid hello in time is closed (docs/protocol.md 2.1,
  2.6, 2.13).

  @AOI-GEN-004
  Scenario: The server selects the subprotocol aoi.v1
    When client "A" opens a WebSocket offering the subprotocol "aoi.v1"
    Then the upgrade is accepted with the subprotocol "aoi.v1" [AOI-GEN-004]

  @AOI-GEN-004
  Scenario Outline: An upgrade that does not offer aoi.v1 is refused
    When client "A" opens a WebSocket offering <offer>
    Then the upgrade is refused [AOI-GEN-004]

    Examples:
      | offer                         |
      | the subprotocol "aoi.v2"      |
      | no subprotocol                |

  @AOI-GEN-004
  Scenario: An unsupported protocol version is rejected
    When client "A" connects and says hello with version 2
    Then client "A" is rejected with reason "unsupported_version" and close code 4426 [AOI-GEN-004]

  @AOI-CON-003
  Scenario: A connection that sends no hello is closed after the handshake timeout
    When client "A" opens a WebSocket and sends nothing
    Then the server closes the connection of client "A" with code 4408 within the handshake timeout [AOI-CON-003]
