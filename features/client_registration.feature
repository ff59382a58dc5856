Feature: Client: app registration over AOI-1
  Client mode. The suite plays the apps on AOI-1, the provisioning endpoint and the AOI
  Server on AOI-2; the AOI Client under test stands between them. An app registers with
  the client and gets the token and endpoint its server app pushes to; unregistering it
  withdraws the token at the server, so that pushes to it are refused with 410
  (docs/protocol.md 2.7, 7.4).

  Background:
    Given the policy lists server "a"
    And the AOI Client is running

  @AOI-APP-001
  Scenario: An app gets the token and endpoint that its AOI Server issued
    When app "one" registers
    Then server "a" receives register for app "one" [AOI-APP-001]
    And app "one" receives app_registered with the token and endpoint of server "a" [AOI-APP-001]

  @AOI-APP-001
  Scenario: The AOI Client accepts an app's connection on any path
    When app "one" connects to the AOI-1 path "/apps/one?v=2"
    Then the AOI Client accepts the connection of app "one" [AOI-APP-001]
    When app "one" registers
    Then app "one" receives app_registered with the token and endpoint of server "a" [AOI-APP-001]

  @AOI-APP-003
  Scenario: Unregistering an app withdraws its token at the AOI Server
    Given app "one" is registered through server "a"
    When app "one" unregisters
    Then server "a" receives unregister for the token of app "one" [AOI-APP-003]
    And app "one" receives app_unregistered once server "a" confirmed [AOI-APP-003]
