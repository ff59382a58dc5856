Feature: general: independent operation through standard interfaces
  Any compliant AOI Client works with any compliant AOI Server, and any compliant server
  app with any compliant AOI Server: the suite is such a client and server app, built from
  schemas/ and docs/protocol.md alone. Every AOI-3 error body is also checked against
  error_response in every scenario [AOI-GEN-001].

  @AOI-GEN-001
  Scenario: The whole path works between independent implementations
    Given client "A" is in session and has registered app "one"
    When the server app pushes "end to end" with priority "high" and ttl 600 to app "one" of client "A"
    Then the push is accepted with 201, an id and a Location [AOI-GEN-001]
    And client "A" receives the notification "end to end" as pushed [AOI-GEN-001]
    When client "A" acks the notification "end to end"
    Then the delivery report of "end to end" says "delivered" [AOI-GEN-001]
    And the health endpoint answers with a valid health document [AOI-GEN-001]
