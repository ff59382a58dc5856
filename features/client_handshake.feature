Feature: Client: the WebSocket upgrade and hello
  Client mode. The AOI Client offers the subprotocol aoi.v1, says hello with version 1,
  closes a connection on which the server did not select aoi.v1, and does not say hello
  again to a server that refused its version (docs/protocol.md 2.1, 2.2, 2.6).

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

  @AOI-GEN-004
  Scenario: The client does not say hello again to a server that refused its version
    Given the policy lists server "a"
    And server "a" refuses every hello as "unsupported_version" with retry_after_s 0.5
    And the AOI Client is running
    When app "one" registers
    Then server "a" gets its first hello and no other within 5 seconds [AOI-GEN-004]
