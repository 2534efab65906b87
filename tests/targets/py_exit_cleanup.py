"""A Python program whose list of 4,000-byte bytearrays grows for SECONDS (default 6) while other
bytearrays come and go, then exits normally: the interpreter frees the list on its way out, so
the snapshot after the exit shows none of it held.

    python3 py_exit_cleanup.py [SECONDS]
"""

import sys
import time

kept: list[bytearray] = []


def grow() -> None:
    kept.append(bytearray(4000))  # the leak: never taken out of the list


def churn() -> int:
    return sum(len(b) for b in [bytearray(3000) for _ in range(5)])


def main() -> None:
    end = time.monotonic() + (float(sys.argv[1]) if len(sys.argv) > 1 else 6.0)
    while time.monotonic() < end:
        grow()
        churn()
        time.sleep(0.002)


main()
