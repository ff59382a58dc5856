Feature: provisioning: the policy document for authenticated clients
  GET /v1/provisioning serves the provider's policy document only to AOI Clients that
  authenticate with Basic client_id:credential (docs/protocol.md 4.1).

  @AOI-PRV-002
  Scenario: An authenticated client gets a valid policy document
    When client "A" fetches the provider's policy
    Then the policy document is served with 200 and is valid [AOI-PRV-002]

  @AOI-PRV-002
  Scenario Outline: The policy is refused to clients that do not authenticate
    When the policy is requested <how>
    Then the policy request is refused with 401 "unauthorized" [AOI-PRV-002]

    Examples:
      | how                                        |
      | without credentials                        |
      | with a wrong credential for client "A"     |
