"""Example robot client: subscribe to xpstream's predictions and act on a functional group's share.

    python deploy/robot_example.py tcp://127.0.0.1:5556 --label alkyl_halide_f --min-percent 20

For each spectrum it prints one line: the action taken (here: send the sample to the
fluoropolymer bin when at least 20 % of its atoms sit in C-F groups), "pass", or "hold" when the
prediction is not to be acted on (the sample is out of the polymer library, no recorded region
can show the group: measure it, or the model reports no share). Errors published by the daemon
are printed too. A real robot would replace `act` with its own motion command.
"""

from __future__ import annotations

import argparse
import math

from xpstream.client import DEFAULT_ENDPOINT, Subscriber


def act(sample: str, label: str, percent: float, shift_ev: float) -> str:
    return f"ACT {sample}: {label} {percent:.0f} % of atoms (charging {shift_ev:+.2f} eV) -> route to bin '{label}'"


def decide(record: dict, label: str, min_percent: float) -> str:
    """The line for one prediction record."""
    sample = record["id"]
    if not record["in_library"]:
        unexplained = ", ".join(record["unexplained_regions"]) or f"score {record['out_of_library_score']:.2f}"
        return f"HOLD {sample}: out of the polymer library ({unexplained})"
    if label in record["undetermined"]:
        return f"HOLD {sample}: {label} not determinable from the recorded regions"
    percent = record["group_percent"].get(label, math.nan)
    if not math.isfinite(percent):
        return f"HOLD {sample}: the model reports no group shares"
    if label in record["labels"] and percent >= min_percent:
        return act(sample, label, percent, record["shift_ev"])
    return f"PASS {sample}: {label} {percent:.0f} % (p={record['probabilities'][label]:.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("endpoint", nargs="?", default=DEFAULT_ENDPOINT)
    parser.add_argument("--label", default="alkyl_halide_f", help="functional-group label to act on")
    parser.add_argument("--min-percent", type=float, default=20.0, help="least share of the atoms to act on")
    parser.add_argument("--count", type=int, help="stop after this many messages")
    args = parser.parse_args()
    with Subscriber(args.endpoint, ["xps/"]) as subscriber:  # every instrument, predictions and errors
        for topic, record in subscriber.messages(args.count):
            if topic.endswith("/error"):
                print(f"ERROR {record.get('source')}: {record['reason']}: {record['message']}", flush=True)
            else:
                print(decide(record, args.label, args.min_percent), flush=True)


if __name__ == "__main__":
    main()
