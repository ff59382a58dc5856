Feature: Client: the WebSocket upgrade and hello
  Client mode. The AOI Client offers the subprotocol aoi.v1, says hello with version 1,
  and closes a connection on which the server did not select aoi.v1 (docs/protocol.md
  2.1, 2.2).

  @AOI-GEN-004
  Scenario: The client offers aoi.v1 and says hello with version 1
    Given the policy lists server "a"
    And the AOI Client is running
    When app "one" registers
    Then server "a" was offered the subprotocol "aoi.v1" and got hello with version 1 [AOI-GEN-004]

  @AOI-GEN-004
  Scenario: The client leaves a server that does not select aoi.v1
    Given the policy lists server "a"
    And server "a" accepts the upgrade without selecting a subprotocol
    And the AOI Client is running
    When app "one" registers
    Then the AOI Client closes the connection to server "a" without sending hello [AOI-GEN-004]
