"""Example robot client: subscribe to xpstream's predictions and act on one label.

    python deploy/robot_example.py tcp://127.0.0.1:5556 --label alkyl_halide_f --min-probability 0.9

For each spectrum it prints one line: the action taken (here: send the sample to the
fluoropolymer bin), "pass", or "hold" when the prediction is not to be acted on (the sample is
out of the polymer library, or no recorded region can show the label: measure it). Errors
published by the daemon are printed too. A real robot would replace `act` with its own motion
command.
"""

from __future__ import annotations

import argparse

import msgpack
import zmq


def act(sample: str, label: str, probability: float, shift_ev: float) -> str:
    return f"ACT {sample}: {label} p={probability:.2f} (charging {shift_ev:+.2f} eV) -> route to bin '{label}'"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("endpoint", nargs="?", default="tcp://127.0.0.1:5556")
    parser.add_argument("--label", default="alkyl_halide_f", help="functional-group label to act on")
    parser.add_argument("--min-probability", type=float, default=0.9)
    parser.add_argument("--count", type=int, help="stop after this many messages")
    args = parser.parse_args()

    context = zmq.Context()
    socket = context.socket(zmq.SUB)
    socket.setsockopt_string(zmq.SUBSCRIBE, "xps/")  # every instrument, predictions and errors
    socket.connect(args.endpoint)
    seen = 0
    try:
        while args.count is None or seen < args.count:
            topic, payload = socket.recv_multipart()
            body = msgpack.unpackb(payload, raw=False)
            seen += 1
            if topic.endswith(b"/error"):
                print(f"ERROR {body.get('source')}: {body['reason']}: {body['message']}", flush=True)
                continue
            p = body["probabilities"][args.label]
            if not body["in_library"]:
                unexplained = ", ".join(body["unexplained_regions"]) or f"score {body['out_of_library_score']:.2f}"
                print(f"HOLD {body['id']}: out of the polymer library ({unexplained})", flush=True)
            elif args.label in body["undetermined"]:
                print(f"HOLD {body['id']}: {args.label} not determinable from the recorded regions", flush=True)
            elif args.label in body["labels"] and p >= args.min_probability:
                print(act(body["id"], args.label, p, body["shift_ev"]), flush=True)
            else:
                print(f"PASS {body['id']}: {args.label} p={p:.2f}", flush=True)
    finally:
        socket.close(linger=0)
        context.term()


if __name__ == "__main__":
    main()
