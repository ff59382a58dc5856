Feature: Client: the apps' interface AOI-1
  Client mode. All apps share one AOI-2 connection per server; AOI-1 listens on loopback
  only, and an app receives only its own notifications (docs/protocol.md 2.1, 7.1, 7.4).

  Background:
    Given the policy lists server "a"
    And the AOI Client is running

  @AOI-APP-004
  Scenario: All apps share one connection per server
    When apps "one" and "two" register on connections of their own
    Then apps "one" and "two" are registered through server "a" on one connection [AOI-APP-004]

  @AOI-SEC-004
  Scenario: AOI-1 listens on loopback addresses only
    Then the AOI-1 port accepts connections on loopback addresses only [AOI-SEC-004]

  @AOI-SEC-004
  Scenario: An app receives only its own notifications
    Given app "one" is registered through server "a"
    And app "two" is registered through server "a"
    When server "a" sends notification "for two" to app "two"
    And server "a" sends notification "for one" to app "one"
    Then app "one" receives "for one" and no other notification [AOI-SEC-004]
    And app "two" receives "for two" and no other notification [AOI-SEC-004]
