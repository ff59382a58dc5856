Feature: collapse: a newer notification replaces an undelivered older one (optional)
  With the optional feature "collapse", a push with the collapse_key of a still queued
  notification for the same token replaces it (docs/protocol.md 3.6).

  @AOI-DEL-008
  Scenario: A newer undelivered notification with the same collapse_key replaces the older
    Given client "A" is in session and has registered app "one"
    And client "A" leaves with bye
    And the server app has pushed "score 1-0" with collapse key "score" to app "one" of client "A"
    And the server app has pushed "score 2-0" with collapse key "score" to app "one" of client "A"
    Then the delivery report of "score 1-0" says "cancelled" [AOI-DEL-008]
    When client "A" resumes its session
    Then client "A" receives the notification "score 2-0" [AOI-DEL-008]
    And client "A" receives no notification "score 1-0" [AOI-DEL-008]
