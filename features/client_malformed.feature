Feature: Client: unknown messages and garbage
  Client mode. Every frame the AOI Client sends, on AOI-2 and AOI-1, is judged against
  schemas/ in every scenario; an unknown message type from a peer gets a non-fatal
  error{code: unsupported_message} and changes nothing (docs/protocol.md 1.3, 2.11).
  Bytes from a server that are not WebSocket, or an answer to the upgrade that is not
  HTTP, cost the client that connection and nothing else: it still serves its apps.

  Background:
    Given the policy lists server "a"
    And the AOI Client is running
    And app "one" is registered through server "a"

  @AOI-GEN-002
  Scenario: An unknown message type from the server gets a non-fatal error
    When server "a" sends a message of unknown type "conformance_probe"
    Then server "a" receives error "unsupported_message", not fatal, and the session stays open [AOI-GEN-002]

  @AOI-GEN-002
  Scenario: An unknown message type from an app gets a non-fatal error
    When app "one" sends a message of unknown type "conformance_probe"
    Then app "one" receives error "unsupported_message", not fatal, and can still register [AOI-GEN-002]

  @AOI-GEN-005
  Scenario Outline: Bytes from a server that break WebSocket stop nothing in the AOI Client
    When server "a" sends the AOI Client <garbage>
    Then the AOI Client still answers app "two" when it registers [AOI-GEN-005]

    Examples: RFC 6455 5.2, 5.6 and 8.1: the client fails the connection, nothing more
      | garbage                             |
      | bytes that are not WebSocket frames |
      | a frame with a reserved opcode      |
      | a text frame that is not UTF-8      |
      | a masked frame                      |

  @AOI-GEN-005
  Scenario: An answer to the upgrade that is not HTTP stops nothing in the AOI Client
    When server "a" answers every upgrade with bytes that are not HTTP
    And server "a" drops the connection
    Then the AOI Client still answers app "two" when it registers [AOI-GEN-005]
