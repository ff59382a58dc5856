Feature: Client: unknown messages
  Client mode. Every frame the AOI Client sends, on AOI-2 and AOI-1, is judged against
  schemas/ in every scenario; an unknown message type from a peer gets a non-fatal
  error{code: unsupported_message} and changes nothing (docs/protocol.md 1.3, 2.11).

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
