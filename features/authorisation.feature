Feature: authorisation: server apps on AOI-3
  Server apps authenticate with a bearer key (401 otherwise) and push only to tokens of
  their own apps (403) (docs/protocol.md 3.1).

  @AOI-SEC-001
  Scenario Outline: A push without a valid server-app key is refused with 401
    Given client "A" is in session and has registered app "one"
    When a push to app "one" of client "A" is sent <credentials>
    Then the push is refused with 401 "unauthorized" and a Bearer challenge [AOI-SEC-001]
    And client "A" receives no notification "unauthorised push" [AOI-SEC-001]

    Examples:
      | credentials      |
      | without a key    |
      | with a wrong key |

  @AOI-SEC-001
  Scenario: A server app cannot push to a token of another server app's app
    Given client "A" is in session and has registered app "one"
    When the server app "other" pushes "intruder" to app "one" of client "A"
    Then the push is refused with 403 "forbidden" [AOI-SEC-001]
    And client "A" receives no notification "intruder" [AOI-SEC-001]
