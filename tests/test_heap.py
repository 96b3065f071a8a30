"""ppypi.heap: the index kept out of the garbage collector's way."""

import gc

from ppypi import heap


class FakeGC:
    """The gc functions settle() uses, counting what it asked."""

    def __init__(self, tracked):
        self.tracked = tracked
        self.frozen = 0
        self.calls = []

    def get_objects(self):
        return [None] * self.tracked

    def collect(self):
        self.calls.append("collect")
        self.tracked -= 10  # some garbage

    def freeze(self):
        self.calls.append("freeze")
        self.frozen += self.tracked
        self.tracked = 0

    def get_freeze_count(self):
        return self.frozen


def test_below_the_threshold_nothing_happens():
    fake = FakeGC(tracked=1000)
    assert heap.settle(threshold=1000, gc=fake) == 0
    assert fake.calls == []


def test_above_the_threshold_garbage_is_collected_then_the_rest_frozen():
    fake = FakeGC(tracked=1001)
    assert heap.settle(threshold=1000, gc=fake) == 991
    assert fake.calls == ["collect", "freeze"]
    # Frozen objects no longer count: the next sync does nothing...
    fake.tracked = 500
    assert heap.settle(threshold=1000, gc=fake) == 0
    # ...until a sync brings many new objects.
    fake.tracked = 5000
    assert heap.settle(threshold=1000, gc=fake) == 4990
    assert fake.frozen == 991 + 4990


def test_with_the_real_collector_objects_leave_its_reach():
    """Frozen objects are outside every generation gc.get_objects() sees."""
    marker = [object() for _ in range(10)]
    try:
        frozen = heap.settle(threshold=0)
        assert frozen > 0
        assert gc.get_freeze_count() >= frozen
        assert not any(o is marker for o in gc.get_objects())
        assert heap.settle(threshold=len(gc.get_objects()) + 1000) == 0
    finally:
        gc.unfreeze()


def test_a_failing_hook_after_a_sync_never_stops_the_syncs():
    """A TimerService whose call fails stops calling: the hook's failure is
    logged and swallowed."""
    from twisted.logger import LogLevel, globalLogPublisher

    from ppypi.tap import _after

    seen = []
    globalLogPublisher.addObserver(seen.append)
    try:
        assert _after(None, lambda: 1 / 0) is None
    finally:
        globalLogPublisher.removeObserver(seen.append)
    assert any(e.get("log_level") == LogLevel.critical and "log_failure" in e for e in seen)
