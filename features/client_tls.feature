Feature: Client: TLS on AOI-2
  Client mode. The AOI Client speaks TLS (wss) to a server whose certificate it can verify
  against the host name of the server URL, and to no other (docs/protocol.md 2.1). The
  client is given the suite's CA as {ca_file}.

  @AOI-SEC-002
  Scenario: The client speaks TLS to a server whose certificate it can verify
    Given server "a" speaks TLS with a certificate for 127.0.0.1 from the CA the client trusts
    And the policy lists server "a"
    And the AOI Client is running
    When app "one" registers
    Then app "one" is served by server "a" over TLS [AOI-SEC-002]

  @AOI-SEC-002
  Scenario Outline: The client refuses a server certificate it cannot verify
    Given server "a" speaks TLS with <certificate>
    And the policy lists server "a"
    And the AOI Client is running
    When app "one" registers
    Then the AOI Client opens a connection to server "a" but never sends it hello [AOI-SEC-002]

    Examples:
      | certificate                                              |
      | a certificate for 127.0.0.1 from a CA the client does not trust |
      | a certificate for another host name from the CA the client trusts |
