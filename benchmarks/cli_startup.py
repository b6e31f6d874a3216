"""How long the command line takes to answer what needs no model.

    python benchmarks/cli_startup.py [--repeats 5]

Times, in fresh processes: ``import vtprune``, ``vtprune --help``, an argument error
(``vtprune eval --keep abc``), an unknown method (``vtprune eval --method nosuch``,
checked through the method registry) and ``vtprune methods`` (plain, ``-v`` and
``--json``); prints the median and the range of each, and whether torch or
transformers were imported by building the parser and by listing the methods. None of
these needs either: each should answer well under a second.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

CASES = (
    ("import vtprune", ["-c", "import vtprune"]),
    ("vtprune --help", ["-m", "vtprune", "--help"]),
    ("vtprune eval --keep abc", ["-m", "vtprune", "eval", "--keep", "abc"]),
    ("vtprune eval --method nosuch", ["-m", "vtprune", "eval", "--method", "nosuch"]),
    ("vtprune methods", ["-m", "vtprune", "methods"]),
    ("vtprune methods -v", ["-m", "vtprune", "methods", "-v"]),
    ("vtprune methods --json", ["-m", "vtprune", "methods", "--json"]),
)

HEAVY = "print(','.join(m for m in ('torch', 'transformers') if m in sys.modules) or 'neither')"
PROBES = (
    ("the parser", "import sys, vtprune.cli; vtprune.cli.build_parser(); " + HEAVY),
    (
        "vtprune methods -v",
        "import sys, contextlib, io, vtprune.cli\n"
        "with contextlib.redirect_stdout(io.StringIO()): vtprune.cli.main(['methods', '-v'])\n" + HEAVY,
    ),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    for what, code in PROBES:
        heavy = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
        print(f"imported by {what}: {heavy}")
    for name, argv in CASES:
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            subprocess.run([sys.executable, *argv], capture_output=True)
            times.append(time.perf_counter() - start)
        print(f"{name:<32} median {statistics.median(times):6.2f} s  (range {min(times):.2f}-{max(times):.2f})")


if __name__ == "__main__":
    main()
