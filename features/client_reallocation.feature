Feature: Client: reallocation, fail-to-app and reconnection
  Client mode. The suite runs several AOI Servers of its own, scripted to accept, to
  refuse (overloaded with a given retry_after_s, bad credentials), to be unreachable, to
  never answer, or to redirect an established session, and measures what the AOI Client
  does from the arrival times at those servers. Timing tolerances come from the IXIT
  ([client.tolerances]; docs/conformance.md). docs/protocol.md chapter 6.

  @AOI-HLF-002 @AOI-OLC-005
  Scenario Outline: Refused for overload, the client tries the next server in policy order
    Given the policy lists servers "<servers>" with selection "<selection>" and priorities "<priorities>"
    And server "a" refuses every hello as "overloaded", suggesting server "x"
    And server "b" refuses every hello as "overloaded"
    And the AOI Client is running
    When app "one" registers
    Then app "one" is served by server "c" [AOI-HLF-002]
    And server "x", which the policy does not list, is never contacted [AOI-HLF-002]
    And servers "a, b, c" received hellos in that order [AOI-OLC-005]

    Examples:
      | servers | selection         | priorities |
      | a, b, c | ordered           | 0, 0, 0    |
      | c, b, a | priority_weighted | 3, 2, 1    |

  @AOI-OLC-005 @AOI-OLC-008
  Scenario: A redirected session moves to the next server, and its apps learn where
    Given the policy lists servers "a, b" in that order
    And the AOI Client is running
    And app "one" is registered through server "a"
    And app "two" is registered through server "a"
    When server "a" redirects the session with reason "overloaded"
    Then the AOI Client registers apps "one" and "two" at server "b" [AOI-OLC-005]
    And apps "one" and "two" receive registration_changed with the token and endpoint of server "b" [AOI-OLC-008]

  @AOI-HLF-003
  Scenario Outline: A server that cannot serve: the app gets another server, or is told to go direct
    Given the policy lists servers "a, b" in that order
    And the policy says <setting> "<action>"
    And server "a" <trouble>
    And the AOI Client is running
    When app "one" registers
    Then app "one" is <outcome> [AOI-HLF-003]

    Examples:
      | setting        | action      | trouble                             | outcome                                                |
      | on_overload    | next_server | refuses every hello as "overloaded" | served by server "b"                                   |
      | on_overload    | fail_to_app | refuses every hello as "overloaded" | told connection_failed "overloaded" with fallback direct |
      | on_unreachable | next_server | never answers hello                 | served by server "b"                                   |
      | on_unreachable | fail_to_app | is unreachable                      | told connection_failed "unreachable" with fallback direct |

  @AOI-OLC-007
  Scenario Outline: When the policy says so, or every server refused, each app is told to go direct
    Given the policy lists servers "a, b" in that order
    And the policy <rule>
    And server "a" refuses every hello as "overloaded"
    And server "b" refuses every hello as "overloaded"
    And the AOI Client is running
    When apps "one" and "two" register on connections of their own
    Then apps "one" and "two" receive connection_failed "<reason>" with fallback direct [AOI-OLC-007]

    Examples:
      | rule                          | reason     |
      | says on_overload "fail_to_app" | overloaded |
      | sets max_servers_tried to 2   | exhausted  |

  @AOI-OLC-009
  Scenario Outline: A credential refusal is no reason to fail over
    Given the policy lists servers "a, b" in that order
    And server "a" refuses every hello as "<reason>" with retry_after_s 0.5
    And the AOI Client is running
    When app "one" registers
    Then the AOI Client tries server "a" again without contacting server "b" [AOI-OLC-009]
    And app "one" receives connection_failed "rejected" with fallback direct [AOI-OLC-009]

    Examples:
      | reason              |
      | invalid_credentials |
      | forbidden           |

  @AOI-OLC-006
  Scenario: The client says no hello to a refusing server before its retry_after_s
    Given the policy lists server "a"
    And server "a" refuses the next 2 hellos as "overloaded" with retry_after_s 1
    And the AOI Client is running
    When app "one" registers
    Then server "a" welcomes the AOI Client after all
    And server "a" received no hello before the retry_after_s of the refusal before it [AOI-OLC-006]

  @AOI-OLC-006
  Scenario: The client says no hello to a server that redirected it before its retry_after_s
    Given the policy lists server "a"
    And the AOI Client is running
    And app "one" is registered through server "a"
    When server "a" redirects the session with reason "overloaded" and retry_after_s 1
    Then server "a" receives a hello again, not before the redirect's retry_after_s [AOI-OLC-006]

  @AOI-OLC-006
  Scenario: Without retry_after_s, hellos to a refusing server back off exponentially
    Given the policy lists server "a"
    And the policy sets the backoff to initial_ms 10, max_ms 640, multiplier 4
    And server "a" refuses every hello as "overloaded"
    And the AOI Client is running
    When app "one" registers
    Then server "a" receives 9 hellos spaced by a growing backoff within the policy's bounds [AOI-OLC-006]

  @AOI-OLC-006
  Scenario: Hellos after a redirect are spread by random jitter
    Given the policy lists server "a"
    And the policy sets the backoff to initial_ms 200, max_ms 1600, multiplier 2
    And the AOI Client is running
    And app "one" is registered through server "a"
    When server "a" redirects the session 8 times, welcoming the client back each time
    Then the delays before the client came back vary at random, within the policy's bounds [AOI-OLC-006]

  @AOI-CON-002
  Scenario: After a lost connection the client reconnects after a random delay
    Given the policy lists server "a"
    And the policy sets the backoff to initial_ms 200, max_ms 1600, multiplier 2
    And the AOI Client is running
    And app "one" is registered through server "a"
    When server "a" drops the connection 8 times, welcoming the client back each time
    Then each reconnection came after a random delay within the policy's first backoff [AOI-CON-002]

  @AOI-CON-002
  Scenario: A server that stays unreachable is retried with growing delays
    Given the policy lists server "a"
    And the policy sets the backoff to initial_ms 10, max_ms 640, multiplier 4
    And the AOI Client is running
    And app "one" is registered through server "a"
    When server "a" drops the connection and then closes every new connection at once
    Then server "a" receives 9 connection attempts spaced by a growing backoff within the policy's bounds [AOI-CON-002]

  @AOI-CON-005
  Scenario: The client does not resume a session from a connection closed with 4409
    Given the policy lists server "a"
    And the AOI Client is running
    And app "one" is registered through server "a"
    When server "a" closes the session with 4409, as when another connection resumed it
    Then no later hello of the AOI Client to server "a" resumes that session [AOI-CON-005]

  @AOI-OLC-012
  Scenario: After telling the app of a failure, the client retries in the background
    Given the policy lists server "a"
    And server "a" refuses the next 3 hellos as "overloaded" with retry_after_s 0.3
    And the AOI Client is running
    When app "one" registers
    Then server "a" receives a hello after app "one" was told connection_failed [AOI-OLC-012]
    And app "one" is told connection_failed once, then connection_restored by server "a" [AOI-OLC-012]

  @AOI-OLC-011
  Scenario: The client returns to its preferred server once it accepts again
    Given the policy lists servers "a, b" with selection "priority_weighted" and priorities "1, 2"
    And the policy sets return_to_preferred_after_s to 1
    And server "a" refuses every hello as "overloaded" with retry_after_s 0.2
    And the AOI Client is running
    And app "one" is registered through server "b"
    When server "a" welcomes every hello again
    Then the AOI Client returns app "one" to server "a", not sooner than return_to_preferred_after_s [AOI-OLC-011]
    And app "one" receives registration_changed "returned_to_preferred" with the token and endpoint of server "a" [AOI-OLC-011]
    And the AOI Client unregisters app "one" at server "b" and leaves it with bye [AOI-OLC-011]
