Feature: malformed: bad frames and bad HTTP get their answer and harm no other session
  Every AOI-2 frame is one JSON object valid against schemas/; malformed input gets an
  error with a machine-readable code, and other clients' sessions are unaffected
  (docs/protocol.md 1.3, 2.11). Every frame the target sends is also checked against
  the schemas in every scenario [AOI-GEN-002]. A malformed WebSocket upgrade or HTTP
  request stops nothing: while its connection is still open, and after it was closed, a
  newcomer is welcomed and an established session is served (docs/protocol.md 2.1, 3.9).

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

  @AOI-GEN-002
  Scenario: A member the receiver does not know is ignored
    Given client "A" is in session
    When client "A" sends the text {"type": "ping", "ts": 7.5, "since_version_2": {"x": 1}}
    Then client "A" receives pong with ts 7.5 [AOI-GEN-002]

  @AOI-GEN-003
  Scenario: Before authentication, a bad frame is fatal
    When client "A" connects and sends the text {"type": "hello", "version": 1} before hello
    Then client "A" gets a fatal error "invalid_message" and close code 4400 [AOI-GEN-003]

  @AOI-GEN-005 @AOI-GEN-006
  Scenario Outline: A malformed WebSocket upgrade is refused and stops nothing
    Given client "B" is in session
    When a hostile client asks for a WebSocket upgrade <flaw>
    Then the upgrade is refused <how> [AOI-GEN-006]
    And a new client "A" is welcomed meanwhile [AOI-GEN-005]
    And client "B" still gets an answer to ping [AOI-GEN-005]
    And after the hostile client left, a new client "C" is welcomed and client "B" answers ping [AOI-GEN-005]

    Examples: RFC 6455 4.2.1: a GET over HTTP/1.1, with these headers
      | flaw                              | how                              |
      | without Sec-WebSocket-Version     | with an HTTP error status        |
      | with Sec-WebSocket-Version 8      | naming WebSocket version 13      |
      | without Sec-WebSocket-Key         | with an HTTP error status        |
      | with Sec-WebSocket-Key "x"        | with an HTTP error status        |
      | without Connection: Upgrade       | with an HTTP error status        |
      | by POST                           | with an HTTP error status        |
      | over HTTP/1.0                     | with an HTTP error status        |

  @AOI-GEN-005 @AOI-GEN-006
  Scenario Outline: A request that breaks HTTP/1.1 is answered and stops nothing
    Given client "B" is in session
    When a hostile client sends a request with <request>
    Then it is answered <answer> [AOI-GEN-006]
    And a new client "A" is welcomed meanwhile [AOI-GEN-005]
    And client "B" still gets an answer to ping [AOI-GEN-005]
    And after the hostile client left, a new client "C" is welcomed and client "B" answers ping [AOI-GEN-005]

    Examples: RFC 9112; a server may refuse or repair what it has no rule for
      | request                                                              | answer                             |
      | a Content-Length that is not a number                                | with 400 and a close               |
      | a Transfer-Encoding that does not end with chunked                   | with 400 or 501 and a close        |
      | both Content-Length and Transfer-Encoding, smuggling a second request | once, and its connection is closed |
      | no Host header                                                       | with 400                           |
      | a NUL in a header                                                    | with an HTTP status                |
      | an HTTP/0.9 request line                                             | or its connection closed           |
      | a header block of 32 KB                                              | with an HTTP status                |
      | a header block of 1 MB                                               | or its connection closed           |

  @AOI-GEN-007
  Scenario: A request head that never completes is answered 408 or closed by its deadline
    When a slow client sends half a request head, then nothing
    Then the server answers 408 or closes the connection within the head deadline [AOI-GEN-007]

  @AOI-GEN-007
  Scenario: A push whose body never completes is answered 408 or closed by its deadline
    Given client "A" is in session and has registered app "one"
    When the server app of app "one" of client "A" sends the head of a push and half its body, then nothing
    Then the server answers 408 or closes the connection within the body deadline [AOI-GEN-007]
