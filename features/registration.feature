Feature: registration: tokens and endpoints
  register is answered with an unguessable token bound to one client and app, and the
  AOI-3 endpoint that names this server; after unregister, pushes get 410
  (docs/protocol.md 2.7).

  @AOI-APP-002
  Scenario: Registration gives a token of at least 128 bits and its endpoint
    Given client "A" is in session
    When client "A" registers app "one"
    Then client "A" gets a token of at least 128 bits and an endpoint for it [AOI-APP-002]

  @AOI-APP-002
  Scenario: Tokens differ for every client and app and look random
    Given client "A" is in session and has registered apps "one" and "two"
    And client "B" is in session and has registered apps "one" and "two"
    Then the tokens of clients "A" and "B" are all different and look random [AOI-APP-002]

  @AOI-APP-002
  Scenario: A token is bound to its client: another client cannot unregister it
    Given client "A" is in session and has registered app "one"
    And client "B" is in session
    When client "B" unregisters the token of app "one" of client "A"
    Then client "B" gets a non-fatal error "unknown_token" [AOI-APP-002]
    And a push to app "one" of client "A" still reaches it [AOI-APP-002]

  @AOI-APP-003
  Scenario: After unregistration, pushes to the token are refused with 410
    Given client "A" is in session and has registered app "one"
    When client "A" unregisters app "one"
    Then client "A" gets the unregistration confirmed [AOI-APP-003]
    When the server app pushes "too late" to app "one" of client "A"
    Then the push is refused with 410 "token_unregistered" [AOI-APP-003]

  @AOI-APP-002 @AOI-APP-003
  Scenario: An app registered again gets a new token, and the old one stays refused
    Given client "A" is in session and has registered app "one"
    When client "A" unregisters app "one"
    Then client "A" gets the unregistration confirmed [AOI-APP-003]
    When client "A" registers app "one" again
    Then the new token of app "one" of client "A" differs from its unregistered one [AOI-APP-002]
    When the server app pushes "to the old token" to the unregistered token of app "one" of client "A"
    Then the push is refused with 410 "token_unregistered" [AOI-APP-003]
    And a push to app "one" of client "A" still reaches it [AOI-APP-002]
