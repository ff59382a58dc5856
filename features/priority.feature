Feature: priority: high before queued normal
  The server SHOULD send high priority notifications ahead of queued normal ones
  (docs/protocol.md 2.8).

  @AOI-DEL-006
  Scenario: A high priority notification overtakes queued normal ones
    Given client "A" is in session and has registered app "one"
    And client "A" leaves with bye
    And the server app has pushed "normal 1" with priority "normal" to app "one" of client "A"
    And the server app has pushed "normal 2" with priority "normal" to app "one" of client "A"
    And the server app has pushed "urgent" with priority "high" to app "one" of client "A"
    When client "A" resumes its session
    Then client "A" receives "urgent" before "normal 1" and "normal 2" [AOI-DEL-006]
