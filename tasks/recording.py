"""Group commit for the check task: the results that finish at about the same time in one worker process are
recorded in one transaction, and the tasks that start at about the same time claim their work rows in one.

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

Claims are grouped the same way (`GroupClaimer`): the threads of a worker take their next messages in bursts
(a recorded batch releases them together), so the first to start leads, waits a few milliseconds for the others
while more tasks are running, and takes every row gathered, with the providers they check, in one transaction
committed before anyone's network call. A claim batch that fails is rolled back whole and each task claims its
own row alone; a row is only ever taken by a conditional statement, so claiming in a batch changes no lease and
nothing the reconciler sees.
"""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Iterator, Protocol, TypeVar

from backoffice.services.rechecks import Outcome


class _Joining(Protocol):
    taken: bool
    written: threading.Event


T = TypeVar("T", bound=_Joining)


@dataclass(eq=False)
class Pending:
    """One task's result waiting for its batch: the work row, what to record, and how it went."""

    work_id: int
    outcome: Outcome
    answer: str | None = None  # the task's return value once its batch committed; None: record it alone
    taken: bool = False
    written: threading.Event = field(default_factory=threading.Event)


@dataclass(eq=False)
class Claiming:
    """One task's work row waiting to be claimed with others'."""

    work_id: int
    answer: Any = None  # what the claim found once its batch committed (tasks/checks.py); None: claim it alone
    taken: bool = False
    written: threading.Event = field(default_factory=threading.Event)


class _Group(Generic[T]):
    """Batches of one worker process: the first to arrive leads, gathers and writes; the others wait for it.

    Two conditions on one lock, so that no arrival wakes every waiting thread: the leader waits on `_arrived` for
    the batch to fill, the others on `_turn` for the leader to take its batch (once a batch)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._turn = threading.Condition(self._lock)
        self._waiting: list[T] = []
        self._leading = False

    def _worth_waiting(self) -> bool:
        """While gathering (holding the lock): whether more may join the batch soon."""
        raise NotImplementedError

    def _join(self, one: T, write: Callable[[list[T]], None], batch_size: int, wait_seconds: float,
              arrived: Callable[[], None] | None = None) -> T:
        """Queue `one` (calling `arrived` under the lock) and return once its batch is written."""
        with self._lock:
            self._waiting.append(one)
            if arrived is not None:
                arrived()
            # The leader stops waiting only when the batch is full or nothing more may come: wake it then only.
            if len(self._waiting) >= batch_size or not self._worth_waiting():
                self._arrived.notify()
        while not one.taken:
            with self._lock:
                while self._leading and not one.taken:
                    self._turn.wait()
                if one.taken:
                    break
                batch = self._gather(batch_size, wait_seconds)
            try:
                write(batch)
            finally:
                for taken in batch:
                    taken.written.set()
        one.written.wait()
        return one

    def _gather(self, batch_size: int, wait_seconds: float) -> list[T]:
        """As the leader (holding the lock): wait for the batch to fill while more may come, take it, and let the
        next leader gather while this batch is written."""
        self._leading = True
        deadline = time.monotonic() + wait_seconds
        while len(self._waiting) < batch_size and self._worth_waiting():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._arrived.wait(left)
        batch, self._waiting[:batch_size] = self._waiting[:batch_size], []
        for one in batch:
            one.taken = True
        self._leading = False
        self._turn.notify_all()
        return batch

    def _changed(self) -> None:
        """What the leader waits for may have changed (holding the lock): wake it if nothing more may come."""
        if not self._worth_waiting():
            self._arrived.notify()


class GroupRecorder(_Group[Pending]):
    """The recording batches of one worker process (one per process: tasks/checks.py holds it)."""

    def __init__(self) -> None:
        super().__init__()
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

        with self._lock:
            self._checking += 1
        try:
            yield hand_in
        finally:
            with self._lock:
                hand_in()
                self._changed()

    def submit(self, pending: Pending, hand_in: Callable[[], None], write: Callable[[list[Pending]], None], *,
               batch_size: int, wait_seconds: float) -> Pending:
        """Queue the result and return once it is written (its `answer` set) or handed back (`answer` None:
        the caller records it alone). `write` records a batch in one unit of work, setting each answer."""
        return self._join(pending, write, batch_size, wait_seconds, hand_in)

    def _worth_waiting(self) -> bool:
        return self._checking > 0


class GroupClaimer(_Group[Claiming]):
    """The claim batches of one worker process (one per process: tasks/checks.py holds it)."""

    def __init__(self) -> None:
        super().__init__()
        self._running = 0  # tasks inside `running`

    @contextmanager
    def running(self) -> Iterator[None]:
        """Around a task: a leader waits for more claims only while other tasks run (whose threads take the next
        messages); with one task at a time (the solo pool) nobody else can join, so nobody waits."""
        with self._lock:
            self._running += 1
        try:
            yield
        finally:
            with self._lock:
                self._running -= 1
                self._changed()

    def claim(self, claiming: Claiming, write: Callable[[list[Claiming]], None], *, batch_size: int,
              wait_seconds: float) -> Claiming:
        """Queue the row and return once its batch is claimed (`answer` set) or handed back (`answer` None: the
        caller claims it alone). `write` claims a batch in one unit of work, setting each answer."""
        return self._join(claiming, write, batch_size, wait_seconds)

    def _worth_waiting(self) -> bool:
        return self._running > len(self._waiting)
