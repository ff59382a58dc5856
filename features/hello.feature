Feature: hello: authentication of AOI Clients and resumption of sessions
  The AOI Server authenticates the AOI Client at hello, before it provides any service,
  and a session can be resumed with its registrations and what was queued meanwhile
  (docs/protocol.md 2.5, 2.6, 2.9).

  @AOI-OLC-001
  Scenario: A client with a valid credential is welcomed
    When client "A" connects and says hello
    Then client "A" is welcomed with a session, a keepalive and limits [AOI-OLC-001]

  @AOI-OLC-001
  Scenario: A wrong credential is refused as invalid_credentials
    When client "A" connects and says hello with a wrong credential
    Then client "A" is rejected with reason "invalid_credentials" and close code 4001 [AOI-OLC-001]

  @AOI-OLC-001
  Scenario: An unknown client is refused as invalid_credentials
    When client "stranger" connects and says hello
    Then client "stranger" is rejected with reason "invalid_credentials" and close code 4001 [AOI-OLC-001]

  @AOI-OLC-001
  Scenario: Nothing is served before hello
    When client "A" connects and registers app "one" before hello
    Then client "A" gets a fatal error "unexpected_message" and close code 4400, and no registration [AOI-OLC-001]

  @AOI-CON-004
  Scenario: A resumed session keeps its registrations and gets what was queued meanwhile
    Given client "A" is in session and has registered app "one"
    And client "A" leaves with bye
    When the server app pushes "while away" to app "one" of client "A"
    And client "A" resumes its session
    Then client "A" is welcomed back with the same session, resumed [AOI-CON-004]
    And client "A" receives the notification "while away" [AOI-CON-004]
    And a push to app "one" of client "A" still reaches it [AOI-CON-004]

  @AOI-CON-004
  Scenario: In a fleet, a session resumed on another node is the same session, tokens and all
    Given client "A" is in session and has registered app "one"
    When client "A" resumes its session on another node of the target's fleet
    Then client "A" is welcomed back with the same session, resumed [AOI-CON-004]
    And a push to app "one" of client "A" still reaches it [AOI-CON-004]

  @AOI-CON-004
  Scenario: An unknown session is no error: the client gets a new session
    When client "A" connects and says hello with an unknown session
    Then client "A" is welcomed with a new session, not resumed [AOI-CON-004]

  @AOI-CON-004
  Scenario: A session resumed on a second connection moves there: the first is closed with 4409
    Given client "A" is in session and has registered app "one"
    When client "A" resumes its session on a second connection, the first still open
    Then client "A" is welcomed back with the same session, resumed [AOI-CON-004]
    And the first connection of client "A" is closed with 4409 [AOI-CON-004]
    And a push to app "one" of client "A" still reaches it [AOI-CON-004]
