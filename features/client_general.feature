Feature: Client: independent operation
  Client mode. The AOI Client works with AOI Servers, a provisioning endpoint and apps
  that share no code with it: the suite's own, written from schemas/ and docs/protocol.md
  alone (docs/protocol.md 1.2).

  @AOI-GEN-001
  Scenario: The client works end to end with an independent server and app
    Given the policy lists server "a"
    And the AOI Client is running
    When app "one" registers
    Then the AOI Client fetched the policy with its client credentials [AOI-GEN-001]
    And app "one" receives app_registered with the token and endpoint of server "a" [AOI-GEN-001]
    When server "a" sends notification "end to end" to app "one"
    Then app "one" receives "end to end" [AOI-GEN-001]
    When app "one" acks "end to end"
    Then server "a" receives an ack for "end to end" [AOI-GEN-001]
