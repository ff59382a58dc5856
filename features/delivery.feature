Feature: delivery: push, notify, ack and redelivery
  A server app pushes to a token on AOI-3; the server notifies the addressed client on
  AOI-2, at least once, until it is acked (docs/protocol.md 2.8, 3.3).

  @AOI-DEL-001
  Scenario: A push to a registered token is accepted with its id
    Given client "A" is in session and has registered app "one"
    When the server app pushes "hello there" to app "one" of client "A"
    Then the push is accepted with 201, an id and a Location [AOI-DEL-001]
    And client "A" receives the notification "hello there" [AOI-DEL-001]

  @AOI-DEL-001
  Scenario: A push to an unknown token is refused with 404
    When the server app pushes "lost" to an unknown token
    Then the push is refused with 404 "unknown_token" [AOI-DEL-001]

  @AOI-DEL-001
  Scenario: A push with an unknown member in its body is refused with 400
    Given client "A" is in session and has registered app "one"
    When the server app pushes a body with the unknown member "tll_s" to app "one" of client "A"
    Then the push is refused with 400 "invalid_request" [AOI-DEL-001]

  @AOI-DEL-002
  Scenario: A notification reaches only the addressed app of the addressed client
    Given client "A" is in session and has registered apps "one" and "two"
    And client "B" is in session and has registered app "one"
    When the server app pushes "for A and one" to app "one" of client "A"
    Then client "A" receives the notification "for A and one" for app "one" [AOI-DEL-002]
    And client "B" receives no notification "for A and one" [AOI-DEL-002]
    And client "A" receives no other copy of "for A and one" [AOI-DEL-002]

  @AOI-DEL-003
  Scenario: An unacked notification is redelivered when the session is resumed
    Given client "A" is in session and has registered app "one"
    When the server app pushes "unacked" to app "one" of client "A"
    And client "A" receives the notification "unacked" without acking it
    And client "A" loses its connection
    And client "A" resumes its session
    Then client "A" receives the notification "unacked" again with the same id [AOI-DEL-003]

  @AOI-DEL-003
  Scenario: An acked notification is not delivered again
    Given client "A" is in session and has registered app "one"
    When the server app pushes "acked once" to app "one" of client "A"
    And client "A" receives and acks the notification "acked once"
    And client "A" leaves with bye
    And client "A" resumes its session
    Then client "A" receives no notification "acked once" [AOI-DEL-003]
