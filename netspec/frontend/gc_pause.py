"""The cyclic garbage collector paused while a spec is read, and what its objects cost it afterwards.

In: a section of work that allocates a great many small, mostly long-lived and acyclic objects (parsing,
composing, validating: a 10,000-layer spec makes about 190,000). Out: ``gc_paused()``, a context manager
during which the collector does not run; the collector is enabled again on the way out (after an error
too) exactly when it was enabled on the way in, so nested pauses and a caller's own ``gc.disable()``
are kept.

Why: while enabled, the collector would scan those objects again and again (a third of the parse time).
And the first allocation after a pause runs a young-generation pass over everything the section left
alive — a tenth of a 10,000-layer read. So an outermost pause that leaves more than the collector's
first threshold of objects hands them straight to its oldest generation instead (``gc.freeze()`` then
``gc.unfreeze()``: two list splices, no pass), where later full collections see them as they see every
long-lived object. Full collections are triggered by the objects promoted the ordinary way, which these
are not; so at most ``MAX_DEFERRED`` of them are outstanding between two full collections: past that a
pause ends the ordinary way until the collector has run one (the bound on garbage a loop of reads can
leave waiting). A program that froze objects of its own (``gc.freeze()`` before a fork) keeps them
frozen: then every pause ends the ordinary way.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

MAX_DEFERRED = 1_000_000  # objects handed to the oldest generation between two full collections, at most


class _Deferred:
    """How many objects pauses handed to the oldest generation since the last full collection."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.count = 0
        self.full_collections = -1  # gc.get_stats()'s count of full collections when ``count`` was reset

    def settle(self) -> None:
        """At the end of an outermost pause (the collector still disabled): hand the young objects to the
        oldest generation when that is allowed."""
        young = gc.get_count()[0]
        if young <= gc.get_threshold()[0] or gc.get_freeze_count():
            return  # no pass would run, or the program's own frozen objects must stay frozen
        with self.lock:
            full = gc.get_stats()[-1]["collections"]
            if full != self.full_collections:  # a full collection has seen everything handed over before
                self.full_collections, self.count = full, 0
            if self.count + young > MAX_DEFERRED:
                return
            self.count += young
            gc.freeze()
            gc.unfreeze()


_DEFERRED = _Deferred()


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """The collector disabled inside; enabled again on the way out when it was on the way in."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            try:
                _DEFERRED.settle()
            finally:
                gc.enable()


__all__ = ["MAX_DEFERRED", "gc_paused"]
