Feature: payload: the 4096-byte limit
  Payloads are opaque strings of at most 4096 bytes of UTF-8; larger ones are refused
  with 413, whatever else is wrong with the body (docs/protocol.md 3.2, 3.3).

  @AOI-DEL-007
  Scenario Outline: A payload over 4096 bytes is refused with 413
    Given client "A" is in session and has registered app "one"
    When the server app pushes a payload of <count> times "<char>" to app "one" of client "A"
    Then the push is refused with 413 "payload_too_large" [AOI-DEL-007]

    Examples: characters of one, two and three bytes
      | count | char |
      | 4097  | x    |
      | 2049  | é    |
      | 1366  | €    |

  @AOI-DEL-007
  Scenario: A payload of exactly 4096 bytes is accepted and delivered intact
    Given client "A" is in session and has registered app "one"
    When the server app pushes a payload of 4096 times "x" to app "one" of client "A"
    Then the push is accepted with 201 [AOI-DEL-007]
    And client "A" receives that payload intact [AOI-DEL-007]
