#!/usr/bin/env python3
"""How many pages SQLite writes to the WAL per delivery, and for which table or index.

Replays the e2e scenario's writes as sqlite_writes.py does (the same statements, the project's
own migrations and pragmas; events with the load benchmark's 1 KB body and ULID-shaped ids),
with BATCH deliveries per transaction: one transaction inserting the events and their
deliveries already leased, one recording the results and attempts. After each commit it reads
the new frame headers from the -wal file; at the end it names each page's b-tree with the
dbstat table. Every frame is one 4 KiB page the kernel copies (two `pwrite` calls: the frame
header and the page), whether the page gained one row or a hundred, so this counts the write
amplification that instruction counts (sqlite_writes.sh) do not see.

usage: wal_frames.py [BATCH ...]      (default: 5 10 20 40 80)
"""
import collections
import os
import random
import struct
import sys
import tempfile

import sqlite_writes as w

PAGE = 4096
FRAME_HEADER = 24
WAL_HEADER = 32
ROUNDS_DELIVERIES = 8000
BASE32 = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
DATA = (
    '{"title":"Post number 1","author":{"name":"Ann Example","id":1},'
    '"tags":["release","webhooks","benchmark"],"body":"' + "x" * 820 + '"}'
)


def ulid(prefix, ms):
    """A ULID as the service makes them: 48 bits of milliseconds, 80 random bits."""
    value, text = (ms << 80) | random.getrandbits(80), ""
    for _ in range(26):
        text, value = BASE32[value & 31] + text, value >> 5
    return f"{prefix}_{text}"


def open_database(directory):
    c = w.open_database(os.path.join(directory, "db.sqlite"))
    # No checkpoint during the replay: every frame stays in the -wal file to be read back.
    c.execute("PRAGMA wal_autocheckpoint = 0")
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return c, os.path.join(directory, "db.sqlite-wal")


class Wal:
    """Reads the page numbers of the frames appended since the last look."""

    def __init__(self, path):
        self.path, self.offset = path, WAL_HEADER

    def new_pages(self):
        pages = []
        with open(self.path, "rb") as f:
            size = os.path.getsize(self.path)
            while self.offset + FRAME_HEADER <= size:
                f.seek(self.offset)
                pages.append(struct.unpack(">I", f.read(4))[0])
                self.offset += FRAME_HEADER + PAGE
        return pages


def replay(batch):
    with tempfile.TemporaryDirectory() as tmp:
        c, wal_path = open_database(tmp)
        wal = Wal(wal_path)
        ingest, results = [], []
        ms = 1_700_000_000_000
        for _ in range(ROUNDS_DELIVERIES // batch):
            ms += 3
            pairs = [(ulid("evt", ms), ulid("dlv", ms)) for _ in range(batch)]
            c.execute("BEGIN IMMEDIATE")
            for event, delivery in pairs:
                c.execute(w.INSERT_EVENT, (event, "default", None, "post.published", DATA, ms))
                c.execute(
                    w.INSERT_LEASED,
                    (delivery, "default", event, "sub_1", ms, ms, ms, ms + 30_000),
                )
            c.execute("COMMIT")
            ingest.append(wal.new_pages())
            c.execute("BEGIN IMMEDIATE")
            for event, delivery in pairs:
                c.execute(w.UPDATE_RESULT, ("succeeded", 1, None, None, ms, delivery, 1))
                c.execute(
                    w.INSERT_ATTEMPT,
                    (delivery, "sub_1", ms, "succeeded", 200, 1, None, None, None, event),
                )
            c.execute("COMMIT")
            results.append(wal.new_pages())
        names = dict((page, name) for name, page in c.execute("SELECT name, pageno FROM dbstat"))
        c.close()
    return [report(label, commits, names, batch) for label, commits in
            (("ingest", ingest), ("results", results))]


def report(label, commits, names, batch):
    """Frames per delivery over the second half (a grown database), and a line saying so by
    b-tree."""
    steady = commits[len(commits) // 2:]
    per_commit = sum(map(len, steady)) / len(steady)
    by_tree = collections.Counter(names.get(p, "?") for pages in steady for p in pages)
    trees = ", ".join(f"{name} {n / len(steady):.1f}" for name, n in by_tree.most_common())
    line = f"  {label}: {per_commit:.1f} frames per commit, {per_commit / batch:.2f} per delivery ({trees})"
    return per_commit / batch, line


def main():
    random.seed(1)
    for batch in [int(b) for b in sys.argv[1:]] or [5, 10, 20, 40, 80]:
        reports = replay(batch)
        total = sum(per_delivery for per_delivery, _ in reports)
        print(f"{batch} deliveries per transaction: {total:.2f} frames per delivery")
        print("\n".join(line for _, line in reports))


if __name__ == "__main__":
    main()
