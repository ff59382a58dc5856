Feature: Client: keepalive
  Client mode. The AOI Client sends ping whenever it has sent nothing for the keepalive
  interval that the server set in welcome.keepalive_s, or the policy's keepalive_s when
  that is smaller, and answers the server's ping with pong (docs/protocol.md 2.10).

  @AOI-CON-001
  Scenario Outline: The client pings at the keepalive the server set, within the policy
    Given the policy lists server "a"
    And the policy sets keepalive_s to <policy>
    And server "a" welcomes with keepalive_s <welcome>
    And the AOI Client is running
    And app "one" is registered through server "a"
    Then the AOI Client pings server "a" after <interval> s without sending, not much sooner [AOI-CON-001]
    And the AOI Client answers a ping from server "a" with a pong echoing its ts [AOI-CON-001]

    Examples:
      | policy | welcome | interval |
      | 60     | 5       | 5        |
      | 5      | 3600    | 5        |
