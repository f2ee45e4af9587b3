"""The lab's reverse lookup: which input key wrote a main chunk, from the world's truth (docs/domain.md section 10).

Stands in for ``scalarcrevlookupid -b IP:PORT KEY`` run on a node, so that
``ringfsck verify`` runs end to end in the lab::

    python -m ringfsck.lab.revlookup --world WORLD KEY

Prints ``KEY: input key INPUT_KEY`` and exits 0, or says nothing was found on
stderr and exits 1. The input keys known are the world's S3 references, split
subkeys and the orphans' (truth.json); the main chunk's 22 md5 chars name its writer.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ringfsck import keys
from ringfsck.lab.world import World


def writer_of(world: World, main_chunk: str) -> str | None:
    """The input key whose md5 prefix begins ``main_chunk``, None if the world knows none."""
    truth = world.truth
    main_chunk = main_chunk.upper()
    if main_chunk in truth.get("orphan_input_keys", {}):
        return truth["orphan_input_keys"][main_chunk]
    known = [*truth["sproxyd_keys"], *(k for subkeys in truth["splits"].values() for k in subkeys)]
    return next((key for key in known if keys.input_key_md5_prefix(key) == main_chunk[: keys.MD5_PREFIX_LEN]), None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ringfsck.lab.revlookup", description=__doc__.splitlines()[0])
    parser.add_argument("--world", required=True, help="a lab world directory")
    parser.add_argument("key", help="a RING main chunk key")
    args = parser.parse_args(argv)
    if not keys.is_valid_key(args.key):
        print(f"{args.key!r} is not a RING key", file=sys.stderr)
        return 2
    found = writer_of(World(Path(args.world)), args.key)
    if found is None:
        print(f"{args.key.upper()}: no input key found", file=sys.stderr)
        return 1
    print(f"{args.key.upper()}: input key {found}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
