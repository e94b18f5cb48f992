"""Instructions per event of the consumer's decoding, counted, against json.loads.

Timings on these machines swing by a third from one run to the next, which
hides a change of a few percent in the consumer's CPU per event. Instructions
counted by valgrind (``--tool=callgrind``) do not swing: the same code on the
same bodies executes the same instructions, so this script shows what a change
to decoding saves, exactly, where ``bench/pipeline.py`` can only show it over
many runs. Instructions are not time (cache misses and branch mispredictions
are not counted), so the figure complements the timings, it does not replace
them.

Each contender runs in a child process under valgrind twice, over 200 and over
1,200 ``crm.customer`` v1 upserts as raw-delivered bodies; the difference
divided by 1,000 is its instructions per event, start-up and imports
cancelling out. The bodies (fixed keys, event ids and times) and the hash seed
are the same every run, and so are the counts. The contenders, on the same
bodies:

- ``json.loads``: the standard library's parser, nothing checked (baseline);
- ``loads_strict``: the project's strict parser (repeated keys, NaN,
  overflowing numbers refused);
- ``decode_event``: parsing, the envelope's checks and the contract's
  validation, with the orders service's mirrored fields, as the apply handler
  decodes.

    python bench/decode_instructions.py      # about 3 minutes (needs valgrind)

The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIZES = (200, 1200)
CONTENDERS = ("json.loads", "loads_strict", "decode_event")
_COLLECTED = re.compile(r"Collected : (\d+)")


def bodies(count: int) -> list[str]:
    """Raw-delivered bodies of ``count`` customer upserts, the customers ``bench/pipeline.py``
    sends; keys, event ids and times fixed, so that every run counts the same bodies."""
    sys.path.insert(0, str(ROOT / "bench"))
    from pipeline import customer

    from replication.events import encode_event, upserted

    draw = random.Random(18)
    when = dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC)
    return [
        encode_event(
            upserted(
                customer(uuid.UUID(int=draw.getrandbits(128)), n),
                1,
                time=when,
                event_id=uuid.UUID(int=draw.getrandbits(128), version=4),
            )
        ).decode()
        for n in range(count)
    ]


def child(contender: str, count: int, path: Path) -> None:
    """Run ``contender`` over the first ``count`` bodies of ``path`` (under valgrind)."""
    sys.path.insert(0, str(ROOT))
    import contracts  # noqa: F401  (registers the contracts, as a consumer's package does)
    from replication.events import decode_event
    from replication.manifest import load_manifest
    from replication.wire import loads_strict

    texts: list[str] = json.loads(path.read_text())[:count]
    fields = (
        load_manifest(ROOT / "examples" / "orders" / "replication.yaml")
        .mirror("crm.customer")
        .fields
    )

    def decode(body: str) -> object:
        return decode_event(body, fields=fields)

    runs: dict[str, Callable[[str], object]] = {
        "json.loads": json.loads,
        "loads_strict": loads_strict,
        "decode_event": decode,
    }
    run = runs[contender]
    run(texts[0])  # warm-up: caches filled the same way at both sizes
    for body in texts:
        run(body)


def count_instructions(valgrind: str, contender: str, count: int, path: Path) -> int:
    command = [
        valgrind,
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        __file__,
        "--child",
        contender,
        str(count),
        str(path),
    ]
    # A fixed hash seed: set and dict layouts, and so the counts, the same every run.
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    found = _COLLECTED.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"{contender} x {count} under valgrind failed:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--child", nargs=3, metavar=("CONTENDER", "COUNT", "BODIES"))
    args = parser.parse_args()
    if args.child:
        contender, count, path = args.child
        child(contender, int(count), Path(path))
        return
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        sys.exit("decode_instructions: valgrind is not installed (apt-get install valgrind)")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bodies.json"
        path.write_text(json.dumps(bodies(max(SIZES))))
        jobs = [(c, n) for c in CONTENDERS for n in SIZES]
        with ThreadPoolExecutor(max_workers=2) as pool:  # the machine's two cores
            counts = dict(
                zip(
                    jobs,
                    pool.map(lambda job: count_instructions(valgrind, job[0], job[1], path), jobs),
                    strict=True,
                )
            )
    per_event = {
        c: (counts[(c, SIZES[1])] - counts[(c, SIZES[0])]) / (SIZES[1] - SIZES[0])
        for c in CONTENDERS
    }
    baseline = per_event["json.loads"]
    print(f"instructions per event, counted by valgrind over {SIZES[1] - SIZES[0]:,} events:")
    for contender in CONTENDERS:
        figure = per_event[contender]
        print(f"  {contender:14} {figure:>10,.0f}  {figure / baseline:>6.2f}x json.loads")
    print(f"total {time.perf_counter() - started:.0f} s")
    summary = {
        "bench": "decode_instructions",
        "decode_ratio_vs_json_loads": round(per_event["decode_event"] / baseline, 3),
        "strict_parse_ratio_vs_json_loads": round(per_event["loads_strict"] / baseline, 3),
    }
    summary |= {f"{c.replace('.', '_')}_instructions": round(per_event[c]) for c in CONTENDERS}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
