"""What ``aoi --help``, ``aoi COMMAND --help`` and ``--version`` show, and that
docs/operations.md describes every flag the commands have, and no other."""

from __future__ import annotations

import functools
import os
import re
import subprocess

import pytest

from .command import AOI, aoi, guide_section, installed_version, one_line

# Each command, and the section of the guide with the table of its flags.
COMMANDS = {
    "server": "3.3",
    "server drain": "3.4",
    "push": "2.1",
    "app": "2.2",
    "client": "13.1",
    "lab": "2.3",
}
COMMON = {"--help", "--version"}  # every command has them: described once, in 1.3


@functools.cache
def help_of(command: str) -> str:
    done = aoi(*command.split(), "--help")
    assert done.returncode == 0, done.stderr
    return done.stdout


def options(page: str) -> dict[str, str]:
    """Each flag (and positional argument) of an argparse help page, with its help text."""
    found: dict[str, str] = {}
    listing, current = False, ""
    for line in page.splitlines():
        if line and not line.startswith(" "):
            listing, current = line in ("options:", "positional arguments:"), ""
        elif not line.strip():
            listing = False
        elif listing and not line.startswith("   "):  # "  --flag METAVAR   help"
            invocation, _, text = line.strip().partition("  ")
            current = invocation.split(",")[-1].split()[0]  # "-h, --help" -> "--help"
            found[current] = text.strip()
        elif listing and current:  # the help text, continued or on a line of its own
            found[current] = f"{found[current]} {line.strip()}".strip()
    return found


def test_version() -> None:
    done = aoi("--version")
    assert (done.returncode, done.stdout, done.stderr) == (0, f"aoi {installed_version()}\n", "")
    done = aoi("server", "--version")
    assert (done.returncode, done.stdout) == (0, f"aoi {installed_version()}\n")


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_shows_the_version_under_its_help(command: str) -> None:
    assert f"aoi {installed_version()}" in help_of(command).splitlines()[-1]


def test_aoi_help_lists_every_command_and_server_drain() -> None:
    listed = re.findall(r"^  ([a-z]+(?: [a-z]+)?)  ", help_of(""), re.MULTILINE)
    assert listed == ["server", "server drain", "push", "client", "app", "lab"]
    assert "aoi server drain --admin URL" in help_of("server")


def test_aoi_without_a_command_or_with_a_wrong_one() -> None:
    done = aoi()
    assert done.returncode == 2 and "usage: aoi COMMAND" in done.stderr and done.stdout == ""
    done = aoi("serve")
    assert done.returncode == 2
    assert one_line(done) == "aoi: unknown command 'serve' (see aoi --help)"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_flag_has_help_and_no_markup(command: str) -> None:
    page = help_of(command)
    found = options(page)
    assert set(found) >= COMMON
    assert [flag for flag, text in found.items() if not text] == []
    assert "`" not in page and ":class:" not in page


@pytest.mark.parametrize(("command", "section"), COMMANDS.items())
def test_the_guide_describes_exactly_the_flags_of_help(command: str, section: str) -> None:
    documented = set(
        re.findall(r"^\| `(--[a-z][a-z-]*|[A-Z][A-Z_]*)\b", guide_section(section), re.M)
    )
    shown = set(options(help_of(command))) - COMMON
    assert sorted(shown - documented) == [], f"aoi {command}: flags not in section {section}"
    assert sorted(documented - shown) == [], f"section {section}: flags aoi {command} lacks"


def test_the_guide_names_every_command_and_the_common_flags() -> None:
    installation = guide_section("1.3")
    for command in COMMANDS:
        assert f"`aoi {command}`" in installation
    assert "`aoi --version`" in installation and "`--help`" in installation


@pytest.mark.parametrize("args", [["--help"], ["server", "--help"]])
def test_help_into_a_pipe_closed_early_ends_without_a_traceback(args: list[str]) -> None:
    read, write = os.pipe()
    os.close(read)  # as `aoi --help | head -1` once head has its line
    try:
        done = subprocess.run(
            [str(AOI), *args], stdout=write, stderr=subprocess.PIPE, text=True, timeout=60
        )
    finally:
        os.close(write)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stderr == ""
