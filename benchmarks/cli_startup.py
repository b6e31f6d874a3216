"""How long the command line takes to answer what needs no model.

    python benchmarks/cli_startup.py [--repeats 5]

Times, in fresh processes: ``import vtprune``, ``vtprune --help``, an argument error
(``vtprune eval --keep abc``), an unknown method (``vtprune eval --method nosuch``,
checked through the method registry, so after torch is imported) and ``vtprune
methods``; prints the median and the range of each, and whether torch or transformers
were imported for the first three.
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
)

PROBE = (
    "import sys, vtprune.cli; vtprune.cli.build_parser(); "
    "print(','.join(m for m in ('torch', 'transformers') if m in sys.modules) or 'neither')"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    probe = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout.strip()
    print(f"imported by the parser: {probe}")
    for name, argv in CASES:
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            subprocess.run([sys.executable, *argv], capture_output=True)
            times.append(time.perf_counter() - start)
        print(f"{name:<32} median {statistics.median(times):6.2f} s  (range {min(times):.2f}-{max(times):.2f})")


if __name__ == "__main__":
    main()
