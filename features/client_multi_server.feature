Feature: Client: several servers and providers at once (optional feature multi_server)
  Client mode, for AOI Clients whose ICS declares multi_server. With multi_server allowed
  by the policy, the client may hold sessions with several servers at once: apps follow
  their app_routes, each server's notifications reach only the apps registered through
  it, losing one session disturbs no other, and each app is served from its own provider
  (docs/protocol.md 4.4). The second provider's policy is served at {provisioning_url_2}.

  @AOI-HLF-001
  Scenario: The client holds sessions with several servers at once
    Given the policy lists servers "a, b" in that order
    And the policy allows sessions with 2 servers at once
    And the policy routes app "one" to server "a"
    And the policy routes app "two" to server "b"
    And the AOI Client is running
    When apps "one" and "two" register on connections of their own
    Then the AOI Client holds sessions with servers "a" and "b" at the same time [AOI-HLF-001]

  @AOI-MS-004
  Scenario: app_routes bind the named apps to the named servers
    Given the policy lists servers "a, b" in that order
    And the policy allows sessions with 2 servers at once
    And the policy routes app "two" to server "b"
    And the AOI Client is running
    When apps "one" and "two" register on connections of their own
    Then app "one" is served by server "a" [AOI-MS-004]
    And app "two" is served by server "b" [AOI-MS-004]

  @AOI-MS-002
  Scenario: Notifications from each server reach only the apps registered through it
    Given the policy lists servers "a, b" in that order
    And the policy allows sessions with 2 servers at once
    And the policy routes app "one" to server "a"
    And the policy routes app "two" to server "b"
    And the AOI Client is running
    And app "one" is registered through server "a"
    And app "two" is registered through server "b"
    When server "a" sends notification "wrong way" to app "two" with the token server "b" issued
    And server "b" sends notification "right way" to app "two"
    Then app "two" receives "right way" and no other notification [AOI-MS-002]

  @AOI-MS-001
  Scenario: Losing the session with one server does not disturb the other
    Given the policy lists servers "a, b" in that order
    And the policy allows sessions with 2 servers at once
    And the policy routes app "one" to server "a"
    And the policy routes app "two" to server "b"
    And the AOI Client is running
    And app "one" is registered through server "a"
    And app "two" is registered through server "b"
    When server "a" drops the connection
    And server "b" sends notification "still here" to app "two"
    Then app "two" receives "still here" [AOI-MS-001]
    And the session with server "b" stayed open throughout [AOI-MS-001]
    And app "two" was told nothing about the loss of server "a" [AOI-MS-001]

  @AOI-MS-003
  Scenario: Each app is served from its own provider
    Given the policy lists server "a"
    And a second provider's policy lists server "b"
    And the AOI Client is running
    When app "one" registers
    And app "two" registers with the second provider
    Then app "one" is served by server "a" [AOI-MS-003]
    And app "two" is served by server "b" [AOI-MS-003]
