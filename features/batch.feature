Feature: batch: a server app pushes many notifications in one request (optional)
  With the optional feature "batch", POST /v1/push carries 1 to 500 notifications, each with
  its token; each is answered in order as its single push would be, and only a request that
  is not a batch is refused as a whole (docs/protocol.md 3.3.1).

  @AOI-DEL-012
  Scenario: Each notification of a batch gets its own result, in order, and is delivered
    Given client "A" is in session and has registered app "one"
    When the server app pushes the batch "batch 1", "batch 2" and "batch 3" to app "one" of client "A"
    Then the batch is answered 200 with one result per notification [AOI-DEL-012]
    And every notification of the batch is accepted with an id of its own [AOI-DEL-012]
    And client "A" receives the notification "batch 1" [AOI-DEL-012]
    And client "A" receives the notification "batch 2" [AOI-DEL-012]
    And client "A" receives the notification "batch 3" [AOI-DEL-012]

  @AOI-DEL-012
  Scenario: A bad notification in a batch is refused alone
    Given client "A" is in session and has registered app "one"
    When the server app pushes a batch with bad notifications between "good 1" and "good 2" to app "one" of client "A"
    Then the batch is answered 200 with one result per notification [AOI-DEL-012]
    And each bad notification of the batch gets the error of its single push [AOI-DEL-012]
    And client "A" receives the notification "good 1" [AOI-DEL-012]
    And client "A" receives the notification "good 2" [AOI-DEL-012]

  @AOI-DEL-012
  Scenario: Two identical notifications in a batch are two notifications
    Given client "A" is in session and has registered app "one"
    When the server app pushes the batch "twice" and "twice" to app "one" of client "A"
    Then the batch is answered 200 with one result per notification [AOI-DEL-012]
    And every notification of the batch is accepted with an id of its own [AOI-DEL-012]
    And client "A" receives "twice" once with each id of the batch [AOI-DEL-012]

  @AOI-DEL-012
  Scenario Outline: A request that is not a batch is refused as a whole
    Given client "A" is in session and has registered app "one"
    When the server app pushes <request> to app "one" of client "A"
    Then the batch is refused with <status> "<code>" [AOI-DEL-012]
    And client "A" receives no notification "not a batch" [AOI-DEL-012]

    Examples:
      | request                                | status | code              |
      | an empty batch                         | 400    | invalid_request   |
      | a batch of 501 notifications           | 413    | payload_too_large |
      | a single push's body as a batch        | 400    | invalid_request   |
      | a batch with an unknown member "dry"   | 400    | invalid_request   |
