"""The master's signals: which it handles, and how they reach its loop.

A handler only queues the signal and wakes the loop through a pipe
(signal.set_wakeup_fd); the loop acts on the queue between its turns
(forker/master.py, Arbiter._dispatch), where it may log, fork and take locks.
A forked worker resets exactly these signals (forker/child.py).
"""

from __future__ import annotations

import os
import signal

TYPE_CHECKING = False  # not typing's: a worker process does not import typing
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional

# Signals the master handles; blocked across fork so that one meant for the
# child cannot reach the master's handler copy in it before it resets them.
HANDLED = (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGTTIN,
           signal.SIGTTOU, signal.SIGUSR1, signal.SIGUSR2, signal.SIGCHLD)
# Master signals that would stop (TTIN/TTOU) or kill (HUP) a worker if they
# reached its process group.
IGNORED = (signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU)

QUEUE_MAX = 32


class SignalQueue:
    """The signals HANDLED, queued by their handlers for the master's loop,
    which polls `fd` and takes them with pop()."""

    def __init__(self) -> None:
        self.pending: List[int] = []
        self.pipe = (-1, -1)  # the read end wakes the loop's poll
        self._saved: Dict[int, Any] = {}
        self._saved_wakeup = -1

    @property
    def fd(self) -> int:
        return self.pipe[0]

    def install(self) -> None:
        read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.pipe = (read_end, write_end)
        for signum in HANDLED:
            self._saved[signum] = signal.signal(signum, self._enqueue)
        self._saved_wakeup = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)

    def _enqueue(self, signum: int, frame: Any) -> None:
        # One CHLD stands for any number (the loop reaps them all), so a storm
        # of exiting workers cannot crowd a TERM out of the bounded queue.
        if len(self.pending) < QUEUE_MAX and not (
                signum == signal.SIGCHLD and signum in self.pending):
            self.pending.append(signum)

    def pop(self) -> Optional[int]:
        """The oldest signal queued, or None."""
        return self.pending.pop(0) if self.pending else None

    def drain(self) -> None:
        """Empty the wakeup pipe (the queue holds what it stood for)."""
        try:
            while os.read(self.pipe[0], 4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    def restore(self) -> None:
        """The dispositions and wakeup descriptor from before install()."""
        if self.pipe[1] >= 0:
            signal.set_wakeup_fd(self._saved_wakeup)
        for signum, previous in self._saved.items():
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        self._saved = {}

    def close(self) -> None:
        """Close the pipe (the master when it stops, a worker after fork)."""
        for fd in self.pipe:
            if fd >= 0:
                os.close(fd)
        self.pipe = (-1, -1)
