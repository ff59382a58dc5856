Feature: overload: refusal of valid clients, service to established sessions
  An overloaded AOI Server refuses even a valid client with reject{reason: overloaded}
  (an invalid one is refused too: invalid_credentials, or overloaded when the server refuses
  for load before it checks the credential), keeps serving the sessions it has, and
  says so on /v1/health; AOI-3 answers 503 only while its push path is overloaded
  (docs/protocol.md 5). The suite drives the server into overload as the IXIT says
  (max_sessions, or commands).

  Background:
    Given the AOI Server under test for "overload"

  @AOI-OLC-002 @AOI-OLC-003
  Scenario: An overloaded server refuses a valid client with reject overloaded
    Given client "A" is in session
    And the server is overloaded
    When client "C" connects and says hello
    Then client "C" is rejected with reason "overloaded" and close code 4503 [AOI-OLC-002]
    And the reject carries retry_after_s [AOI-OLC-003]
    And the reject lists the configured alternate servers [AOI-OLC-003]

  @AOI-OLC-002
  Scenario: An overloaded server never welcomes an invalid client
    Given client "A" is in session
    And the server is overloaded
    When client "C" connects and says hello with a wrong credential
    Then client "C" is refused as invalid_credentials with 4001, or as overloaded with 4503 [AOI-OLC-002]

  @AOI-OLC-004
  Scenario: Established sessions keep their service while the server is overloaded
    Given client "A" is in session and has registered app "one"
    And the server app has pushed "before the overload" to app "one" of client "A"
    And the server is overloaded
    When the server app pushes 5 notifications to app "one" of client "A"
    Then every push was answered, with 201 unless the push path is overloaded [AOI-OLC-004]
    And client "A" receives "before the overload" and every notification accepted with 201 [AOI-OLC-004]
    And client "A" still gets an answer to ping [AOI-OLC-004]
    When the overload ends
    Then client "C" is welcomed again [AOI-OLC-004]

  @AOI-OLC-013
  Scenario: While the server refuses new sessions, health says overloaded with 503
    Given client "A" is in session and has registered app "one"
    And the server is overloaded
    Then the health endpoint reports "overloaded" with status 503 [AOI-OLC-013]

  @AOI-OLC-013
  Scenario: While its push path is overloaded, AOI-3 answers 503 with Retry-After
    Given the AOI Server under test for "push_overload"
    And its push path is overloaded
    When the server app pushes "during the overload" to an unknown token
    Then the push is answered 503 with Retry-After [AOI-OLC-013]
