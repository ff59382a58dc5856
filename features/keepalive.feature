Feature: keepalive: ping, pong and the silence limit
  The server sets the keepalive interval within the provider's policy and closes a
  session from which it received nothing for twice that long (docs/protocol.md 2.10).

  @AOI-CON-001
  Scenario: The keepalive interval is within the provider's policy
    Given client "A" is in session
    When client "A" fetches the provider's policy
    Then the keepalive of client "A" does not exceed the policy's keepalive_s [AOI-CON-001]

  @AOI-CON-001
  Scenario: A ping is answered with a pong echoing its ts
    Given client "A" is in session
    When client "A" sends ping with ts 12345.5
    Then client "A" receives pong with ts 12345.5 [AOI-CON-001]

  @AOI-CON-001 @slow
  Scenario: A silent session is closed after twice the keepalive, a pinging one is kept
    Given client "A" is in session and stays silent
    And client "B" is in session and pings every keepalive interval
    Then the server closes the session of client "A" with code 4408 after twice the keepalive [AOI-CON-001]
    And client "B" is still in session [AOI-CON-001]
