Feature: malformed: bad frames get their error code and harm no other session
  Every AOI-2 frame is one JSON object valid against schemas/; malformed input gets an
  error with a machine-readable code, and other clients' sessions are unaffected
  (docs/protocol.md 1.3, 2.11). Every frame the target sends is also checked against
  the schemas in every scenario [AOI-GEN-002].

  @AOI-GEN-003
  Scenario Outline: A bad frame gets its error code and harms no other session
    Given client "A" is in session
    And client "B" is in session
    When client "A" sends <frame>
    Then client "A" receives an error "<code>" that is <fatality> [<req>]
    And client "A" <after> [AOI-GEN-003]
    And client "B" still gets an answer to ping [AOI-GEN-003]

    Examples: not JSON, not an object, schema-invalid, unexpected
      | frame                                                  | code               | fatality  | req         | after                       |
      | the text {"type": "ping"                               | malformed_frame    | not fatal | AOI-GEN-003 | is still in session         |
      | a binary frame                                         | malformed_frame    | not fatal | AOI-GEN-003 | is still in session         |
      | the text [1, 2, 3]                                     | not_an_object      | not fatal | AOI-GEN-003 | is still in session         |
      | the text {"ts": 1}                                     | not_an_object      | not fatal | AOI-GEN-003 | is still in session         |
      | the text {"type": 7}                                   | not_an_object      | not fatal | AOI-GEN-003 | is still in session         |
      | the text {"type": "register", "req": "one", "app_id": "x"} | invalid_message | not fatal | AOI-GEN-003 | is still in session         |
      | the text {"type": "register", "req": 1}                | invalid_message    | not fatal | AOI-GEN-003 | is still in session         |
      | the text {"type": "ack", "ids": []}                    | invalid_message    | not fatal | AOI-GEN-003 | is still in session         |
      | the text {"type": "hello", "version": 1, "client_id": "x", "credential": "y"} | unexpected_message | not fatal | AOI-GEN-003 | is still in session |
      | a text of 70000 bytes                                  | frame_too_large    | fatal     | AOI-GEN-003 | is closed with code 4413    |

    @AOI-GEN-002
    Examples: unknown message type
      | frame                                                  | code                | fatality  | req         | after               |
      | the text {"type": "teleport", "to": "mars"}            | unsupported_message | not fatal | AOI-GEN-002 | is still in session |

  @AOI-GEN-003
  Scenario: Before authentication, a bad frame is fatal
    When client "A" connects and sends the text {"type": "hello", "version": 1} before hello
    Then client "A" gets a fatal error "invalid_message" and close code 4400 [AOI-GEN-003]
