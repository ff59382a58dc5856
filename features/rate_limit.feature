Feature: rate limit: server apps over their rate, failed hello attempts
  A server app over its rate gets 429 with Retry-After (docs/protocol.md 3.3); failed
  hello attempts are rate-limited per client and per source address, with the two limits
  the IXIT declares (docs/protocol.md 2.6).
  Comparing credentials in constant time cannot be observed on the wire and is not judged.

  @AOI-DEL-009
  Scenario: A server app over its rate gets 429 with Retry-After
    Given client "A" is in session and has registered app "limited"
    When the server app "limited" pushes back to back to app "limited" of client "A"
    Then a push is refused with 429 "rate_limited" and a Retry-After in seconds [AOI-DEL-009]

  @AOI-SEC-003 @disruptive
  Scenario: Failed hello attempts are rate-limited per client and per source
    Given the AOI Server under test for "hello_limit"
    When client "E" says hello with a wrong credential as often as the per-client failed hello limit
    Then every attempt is rejected with "invalid_credentials" or "rate_limited" [AOI-SEC-003]
    When client "E" connects and says hello with a wrong credential
    Then client "E" is rejected with reason "rate_limited" and close code 4029 [AOI-SEC-003]
    When unknown clients say hello from the same address up to the per-source limit
    Then every attempt is rejected with "invalid_credentials" or "rate_limited" [AOI-SEC-003]
    When client "stranger" connects and says hello
    Then client "stranger" is rejected with reason "rate_limited" and close code 4029 [AOI-SEC-003]
