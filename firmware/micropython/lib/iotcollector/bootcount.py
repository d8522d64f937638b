"""The node's boot counter: persisted and incremented at every start, before the first reading.

Stored as decimal text in a small file, replaced atomically (write a temporary file, rename). A counter
that cannot be read must never restart at a number already used, or new readings would collide with old
identities and the gateway would drop them as duplicates: ``next_boot`` therefore also goes past every
boot still present in the cache.
"""

from iotcollector.cachelog import recover_tmp, rename_over


def read_boot(path: str) -> int:
    """The stored counter, or -1 when there is none or it is unreadable."""
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return -1


def next_boot(path: str, fs, cache=None) -> int:
    """Increment, persist and return this start's boot number (0 on the very first start)."""
    recover_tmp(fs, path)
    last = read_boot(path)
    if cache is not None:
        for rec in cache.records():
            if rec.boot > last:
                last = rec.boot
    boot = (last + 1) & 0xFFFFFFFF
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % boot)
        f.flush()
    rename_over(fs, tmp, path)
    return boot
