Feature: store: offline clients, TTL and durability
  Notifications for an offline client are kept until their TTL; expired ones are never
  delivered and report expired; a 201 survives a crash (docs/protocol.md 2.8, 3.3).

  @AOI-DEL-004
  Scenario: A notification for an offline client is kept and delivered when it returns
    Given client "A" is in session and has registered app "one"
    And client "A" leaves with bye
    When the server app pushes "kept for later" with ttl 600 to app "one" of client "A"
    Then the delivery report of "kept for later" says "queued" [AOI-DEL-004]
    When client "A" resumes its session
    Then client "A" receives the notification "kept for later" [AOI-DEL-004]

  @AOI-DEL-004
  Scenario Outline: An expired notification is never delivered and reports expired
    Given client "A" is in session and has registered app "one"
    And client "A" leaves with bye
    When the server app pushes "short-lived" with ttl <ttl> to app "one" of client "A"
    Then the delivery report of "short-lived" says "expired" once its TTL has passed [AOI-DEL-004]
    When client "A" resumes its session
    Then client "A" receives no notification "short-lived" [AOI-DEL-004]

    Examples:
      | ttl |
      | 0   |
      | 1   |

  @AOI-DEL-010 @disruptive
  Scenario: A notification answered with 201 survives a crash and restart of the server
    Given the AOI Server under test for "restart"
    And client "A" is in session and has registered app "one"
    And client "A" leaves with bye
    When the server app pushes "durable" with ttl 600 to app "one" of client "A"
    And the push is accepted with 201
    And the server crashes and restarts
    And client "A" resumes its session
    Then client "A" receives the notification "durable" [AOI-DEL-010]
