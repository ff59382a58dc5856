Feature: tls: AOI-2 over TLS
  AOI-2 runs over TLS (wss), with a certificate the AOI Client verifies against the
  server's host name (docs/protocol.md 2.1).

  Background:
    Given the AOI Server under test for "tls"

  @AOI-SEC-002
  Scenario: A client that verifies the certificate is served over wss
    When client "A" connects over TLS and says hello
    Then the connection of client "A" runs over TLS with a verified certificate [AOI-SEC-002]
    And client "A" is welcomed with a session, a keepalive and limits [AOI-SEC-002]
