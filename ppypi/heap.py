"""
The index's objects kept out of the cyclic garbage collector's way.

With 100,000 files indexed the daemon holds ~270,000 objects the collector
tracks. A full collection walks all of them (~80 ms on the bench machine,
the reactor stopped meanwhile), and under load one ran every few seconds:
answers waited, and the cost grew with the index, for objects that live
until a sync replaces them and that reference counting frees (they hold no
cycles). C{gc.freeze()} moves every live object to a permanent generation
that collections skip; what is garbage is collected just before.

The price: an object alive at a freeze that later ends up in a reference
cycle nobody holds (a request in flight then, say) is never collected.
Freezes are rare (the first sync, then only syncs that bring tens of
thousands of objects), so that is a few objects per freeze.
"""

import gc

# Tracked objects outside the frozen generation past which a sync freezes
# them: a bare daemon starts with more than this, so the first sync always
# freezes; later, once that many objects have come since the last freeze
# (a sync that brought many new files, usually).
FREEZE_AFTER = 50_000


def settle(threshold=FREEZE_AFTER, gc=gc):
    """
    Collect, then freeze, once more than C{threshold} objects are tracked
    outside the frozen generation. When there is nothing to do, it costs a
    list of those objects (a few ms; once per sync).

    @return: how many objects were frozen now (0: none).
    """
    if len(gc.get_objects()) <= threshold:
        return 0
    gc.collect()
    before = gc.get_freeze_count()
    gc.freeze()
    return gc.get_freeze_count() - before
