Feature: report: delivery reports for server apps
  The server app that pushed a notification can follow its status: queued, delivered,
  expired, cancelled (docs/protocol.md 3.4).

  @AOI-DEL-005
  Scenario: The server app follows a notification from queued to delivered
    Given client "A" is in session and has registered app "one"
    When the server app pushes "tracked" to app "one" of client "A"
    And client "A" receives the notification "tracked" without acking it
    Then the delivery report of "tracked" says "queued" [AOI-DEL-005]
    When client "A" acks the notification "tracked"
    Then the delivery report of "tracked" says "delivered" with delivered_at [AOI-DEL-005]

  @AOI-DEL-005
  Scenario: Only the server app that pushed a notification reads its report
    Given client "A" is in session and has registered app "one"
    And the server app has pushed "private" to app "one" of client "A"
    When the server app "other" asks for the delivery report of "private"
    Then the report is refused with 404 "not_found" [AOI-DEL-005]

  @AOI-DEL-005
  Scenario: The report of an unknown notification is refused with 404
    When the server app asks for the delivery report of an unknown id
    Then the report is refused with 404 "not_found" [AOI-DEL-005]
