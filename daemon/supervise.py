"""Supervised stages: no input ends a thread, and a thread that does end says so.

Each stage of the daemon (a source's reader, the folder settler, the publisher) runs its loop
through `supervised`: an exception that escapes the loop (a bug, a full disk) is logged in one
line, the stage reads as down (`xpstream_stage_up{stage}` 0, `/healthz` 503 naming it, the
systemd watchdog no longer fed) and the loop is restarted after `RESTART_S` (counted in
`xpstream_stage_restarts_total`). Errors of one item are handled inside the loops, at the item,
as error records with reason `internal`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("xpstream.supervise")
RESTART_S = 1.0
MAX_ERROR_CHARS = 200


def one_line(err: BaseException, limit: int = MAX_ERROR_CHARS) -> str:
    """'Type: message' on one line, at most `limit` characters (error texts never grow with input)."""
    text = " ".join(f"{type(err).__name__}: {err}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def supervised(stage: str, loop: Callable[[], None], metrics, stopped: threading.Event) -> threading.Thread:
    """A (not yet started) daemon thread running `loop` until it returns; when it raises, the
    stage is reported down and the loop restarted after RESTART_S unless `stopped` is set."""

    def run() -> None:
        metrics.set_stage(stage, True)
        while True:
            try:
                loop()
                return
            except Exception as err:  # the stage boundary: report, then restart
                why = one_line(err)
                log.error("stage %s died: %s; restarting in %.0f s", stage, why, RESTART_S)
                metrics.set_stage(stage, False, why)
                if stopped.wait(RESTART_S):
                    return
                metrics.stage_restarts.labels(stage).inc()
                metrics.set_stage(stage, True)

    return threading.Thread(target=run, name=stage, daemon=True)
