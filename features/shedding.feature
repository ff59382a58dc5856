Feature: shedding: established sessions redirected above the high watermark (optional)
  Above a configured high watermark an AOI Server may shed established sessions with
  redirect and close 4503, at a bounded rate (docs/protocol.md 5.4). Only for targets
  whose ICS declares the feature "shedding".

  Background:
    Given the AOI Server under test for "shedding"

  @AOI-OLC-010
  Scenario: Sessions above the high watermark are shed with redirect at a bounded rate
    When clients fill the server above its high watermark
    Then sessions are shed with redirect reason "overloaded" and close code 4503 [AOI-OLC-010]
    And sessions are shed no faster than the configured rate [AOI-OLC-010]
