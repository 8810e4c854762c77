"""A benchmark measures only what it meant to: anything else stops it before a figure is recorded."""
from __future__ import annotations


class NotMeasured(RuntimeError):
    """What the benchmark saw is not what it set out to measure (a redirect instead of the page, a check that
    errored instead of running, a chain that does not verify): its figures would be about something else."""


def expect(condition: bool, problem: str) -> None:
    """Stop the benchmark, naming the problem, unless `condition` holds (unlike assert, never skipped by -O)."""
    if not condition:
        raise NotMeasured(f"{problem}; nothing was recorded")


def expect_status(response, url: str, status: int = 200) -> None:
    """The response is the page itself, not a redirect (to the sign-in page, say) or an error."""
    where = f" to {response.headers['Location']}" if response.headers.get("Location") else ""
    expect(response.status_code == status,
           f"GET {url} answered {response.status_code}{where}, not {status}")
