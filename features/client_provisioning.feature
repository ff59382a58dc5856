Feature: Client: provisioning
  Client mode. The AOI Client takes its servers and rules from the provider's policy
  document, fetched with its credentials; an invalid document is refused and the last
  valid one kept (docs/protocol.md 4.1, 4.5). The client's error message is in its own
  log, which the suite does not judge.

  @AOI-PRV-001
  Scenario: The client takes its servers from the provider's policy document
    Given the policy lists server "b"
    And the AOI Client is running
    When app "one" registers
    Then the AOI Client fetched the policy with its client credentials [AOI-PRV-001]
    And app "one" is served by server "b" [AOI-PRV-001]

  @AOI-PRV-001
  Scenario Outline: An invalid policy document is refused and the last valid one kept
    Given the policy lists server "a"
    And the AOI Client is running
    And app "one" is registered through server "a"
    When the AOI Client is stopped
    And the provisioning endpoint serves <document> listing server "b" instead
    And the AOI Client is started again with the same state directory
    And the AOI Client fetches the policy again
    And app "two" registers
    Then app "two" is served by server "a" [AOI-PRV-001]
    And server "b" is never contacted [AOI-PRV-001]

    Examples:
      | document                                   |
      | a document that fails the schema           |
      | a document past its valid_until            |
      | a document whose backoff max_ms is below initial_ms |
