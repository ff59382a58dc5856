Feature: Client: delivery to the apps
  Client mode. The AOI Client acks a notification to its AOI Server only after the app
  acked it (end to end), hands each id to the app once even when the server delivers it
  again, and hands a notification only to the app it is addressed to (docs/protocol.md
  2.8, 7.4).

  Background:
    Given the policy lists server "a"
    And the AOI Client is running
    And app "one" is registered through server "a"

  @AOI-DEL-003
  Scenario: The client acks a notification to the server only after the app acked it
    When server "a" sends notification "end to end" to app "one"
    Then app "one" receives "end to end" [AOI-DEL-003]
    And server "a" has received no ack for "end to end" after a ping round trip [AOI-DEL-003]
    When app "one" acks "end to end"
    Then server "a" receives an ack for "end to end" [AOI-DEL-003]

  @AOI-DEL-003
  Scenario: A notification delivered again after a reconnection reaches the app once
    Given server "a" delivered notification "only once" to app "one", which acked it
    When server "a" drops the connection
    And the AOI Client is in session with server "a" again
    And server "a" sends notification "only once" to app "one" again
    Then server "a" receives an ack for "only once" again [AOI-DEL-003]
    When server "a" sends notification "after it" to app "one"
    Then app "one" receives "after it" without "only once" again [AOI-DEL-003]

  @AOI-DEL-002
  Scenario: A notification reaches only the app it is addressed to, by its token
    Given app "two" is registered through server "a"
    When server "a" sends notification "stray" to app "one" with a token it never issued
    And server "a" sends notification "for two" to app "two"
    And server "a" sends notification "for one" to app "one"
    Then app "one" receives "for one" and no other notification [AOI-DEL-002]
    And app "two" receives "for two" and no other notification [AOI-DEL-002]
