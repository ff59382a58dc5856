Feature: cancel: a server app withdraws an undelivered notification (optional)
  With the optional feature "cancel", DELETE /v1/messages/{id} cancels a queued
  notification, which is then never delivered (docs/protocol.md 3.5).

  @AOI-DEL-011
  Scenario: An undelivered notification is cancelled and never delivered
    Given client "A" is in session and has registered app "one"
    And client "A" leaves with bye
    And the server app has pushed "regret" to app "one" of client "A"
    When the server app cancels "regret"
    Then the cancel is answered 200 with status "cancelled" [AOI-DEL-011]
    When client "A" resumes its session
    Then client "A" receives no notification "regret" [AOI-DEL-011]

  @AOI-DEL-011
  Scenario: Cancelling a cancelled notification again gives the same report
    Given client "A" is in session and has registered app "one"
    And client "A" leaves with bye
    And the server app has pushed "regret twice" to app "one" of client "A"
    When the server app cancels "regret twice"
    Then the cancel is answered 200 with status "cancelled" [AOI-DEL-011]
    And cancelling "regret twice" again gives the same report [AOI-DEL-011]

  @AOI-DEL-011
  Scenario: A delivered notification cannot be cancelled
    Given client "A" is in session and has registered app "one"
    And the server app has pushed "done" to app "one" of client "A"
    And client "A" receives and acks the notification "done"
    And the delivery report of "done" says "delivered"
    When the server app cancels "done"
    Then the cancel is refused with 409 "not_cancellable" [AOI-DEL-011]
