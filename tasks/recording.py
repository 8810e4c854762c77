"""Group commit for the check task: the results that finish at about the same time in one worker process are
recorded in one transaction.

Recording a check alone costs a transaction of its own: the provider's lock, a commit, and an append to the
audit chain (which takes the chain's lock). The threads of one worker finish checks a few milliseconds apart,
so the first to finish *leads*: it waits up to `wait_seconds` for the others (no longer than while some are
still checking, never for more than `batch_size`), takes what has gathered and writes it in one unit of work
in its own thread; the others wait for that commit and return their answer. The next to finish meanwhile
leads the next batch, so batches overlap. With one task at a time (the solo pool, eager tests) nobody else is
checking and each result is written at once, alone.

Nothing is acknowledged before its batch commits (tasks acknowledge late), so a worker killed with a batch
gathered loses nothing: its messages come back and its work rows' leases run out, as for one check. A batch
that cannot be written (a run recorded meanwhile by a second delivery, anything else) is rolled back whole and
each of its tasks records its own result alone, the way it always has.
"""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

from backoffice.services.rechecks import Outcome


@dataclass(eq=False)
class Pending:
    """One task's result waiting for its batch: the work row, what to record, and how it went."""

    work_id: int
    outcome: Outcome
    answer: str | None = None  # the task's return value once its batch committed; None: record it alone
    taken: bool = False
    written: threading.Event = field(default_factory=threading.Event)


class GroupRecorder:
    """The batches of one worker process (one per process: tasks/checks.py holds it)."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._waiting: list[Pending] = []
        self._leading = False
        self._checking = 0  # tasks that have claimed their row and not yet handed in their result

    @contextmanager
    def checking(self) -> Iterator[Callable[[], None]]:
        """Around a task's check: while it runs, a leader may wait for its result. Yields the hand-in mark
        (`submit` calls it); a task that leaves without handing in (a retry, an error) stops counting here."""
        handed_in = False

        def hand_in() -> None:
            nonlocal handed_in
            if not handed_in:
                handed_in = True
                self._checking -= 1

        with self._changed:
            self._checking += 1
        try:
            yield hand_in
        finally:
            with self._changed:
                hand_in()
                self._changed.notify_all()

    def submit(self, pending: Pending, hand_in: Callable[[], None], write: Callable[[list[Pending]], None], *,
               batch_size: int, wait_seconds: float) -> Pending:
        """Queue the result and return once it is written (its `answer` set) or handed back (`answer` None:
        the caller records it alone). `write` records a batch in one unit of work, setting each answer."""
        with self._changed:
            self._waiting.append(pending)
            hand_in()
            self._changed.notify_all()
        while not pending.taken:
            with self._changed:
                while self._leading and not pending.taken:
                    self._changed.wait()
                if pending.taken:
                    break
                batch = self._gather(batch_size, wait_seconds)
            try:
                write(batch)
            finally:
                for one in batch:
                    one.written.set()
        pending.written.wait()
        return pending

    def _gather(self, batch_size: int, wait_seconds: float) -> list[Pending]:
        """As the leader (holding the condition): wait for the batch to fill while others are still checking,
        take it, and let the next leader gather while this batch is written."""
        self._leading = True
        deadline = time.monotonic() + wait_seconds
        while len(self._waiting) < batch_size and self._checking > 0:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._changed.wait(left)
        batch, self._waiting[:batch_size] = self._waiting[:batch_size], []
        for one in batch:
            one.taken = True
        self._leading = False
        self._changed.notify_all()
        return batch
