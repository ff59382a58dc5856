"""The hostile-input campaign (``python -m bench.hostile``) at small sizes: every case runs
against a real server process with an established session pushed meanwhile.

What it must show is what the full campaign must show: no crash, every answer as
documented, nothing accepted lost, no runaway memory. Its latencies are printed, not
judged here (timing belongs to the benchmark, see docs/operations.md).
"""

from __future__ import annotations

from pathlib import Path

from bench.hostile.campaign import QUICK, run, table

RSS_GROWTH_KB = 64 * 1024  # what the cases may leave behind at most: buffers, caches


def test_the_quick_campaign_stops_nothing_and_loses_nothing(tmp_path: Path) -> None:
    report = run(QUICK, folder=tmp_path)
    print(table(report))
    assert report.crashes == 0
    assert len(report.rows) == 14
    for row in report.rows:
        assert row.tried > 0 and row.documented == row.tried, (row.case, row.answers, row.note)
    assert report.steady["accepted"] > 0
    assert report.steady["not_received"] == 0 and report.steady["duplicates"] == 0
    assert report.rss_kb_after < report.rss_kb_before + RSS_GROWTH_KB
