"""Bounded overload: a publisher floods the daemon's SUB input far above its capacity for a
fixed time. Resident memory stays under a bound, drops are counted, /metrics answers during the
flood, throughput recovers afterwards, and SIGTERM ends it promptly."""

import threading
import time
import urllib.request

import pytest
import zmq

from tests.conftest import draw
from tests.harness import DaemonProcess, upstream_publisher
from xpstream.daemon.config import BatchConfig
from xpstream.daemon.messages import encode_spectrum

pytestmark = pytest.mark.integration

FLOOD_S = 8.0
RSS_BOUND_MB = BatchConfig().memory_mb  # the default ceiling (1 GiB); measured peak ~0.43 GiB


def test_flood_is_bounded_counted_and_recovered(tmp_path, library):
    context = zmq.Context()
    upstream, endpoint = upstream_publisher(context)
    d = DaemonProcess(tmp_path, "--sub", endpoint, "--capacity", "1024", watch=False)
    try:
        _, batch = draw(library, n=16, seed=1)
        payloads = [encode_spectrum(f"x{i}", "esca1", intensities=batch.spectra[i]) for i in range(16)]
        time.sleep(0.5)
        stop = threading.Event()
        sent = [0]

        def flood():
            while not stop.is_set():
                upstream.send_multipart([b"s", payloads[sent[0] % 16]])
                sent[0] += 1

        peak, scrape_s = 0.0, []
        flooder = threading.Thread(target=flood)
        flooder.start()
        start = time.monotonic()
        while time.monotonic() - start < FLOOD_S:
            t = time.monotonic()
            urllib.request.urlopen(f"http://{d.metrics}/metrics", timeout=5).read()
            scrape_s.append(time.monotonic() - t)
            peak = max(peak, d.rss_mb())
            d.receive(10_000, timeout=0.2)  # the subscriber keeps up as well as it can
        stop.set()
        flooder.join()
        deadline = time.monotonic() + 120  # the backlog (queue and ZeroMQ's buffer) drains: 2 s of quiet
        while time.monotonic() < deadline and d.receive(10**6, timeout=2):
            pass
        metrics = d.scrape()
        dropped = metrics.get('xpstream_spectra_dropped_total{source="sub"}', 0)
        processed = metrics['xpstream_spectra_processed_total{source="sub"}']
        assert dropped > 0 and processed > 0
        assert processed + dropped <= sent[0]
        assert peak < RSS_BOUND_MB, peak
        assert max(scrape_s) < 2.0, max(scrape_s)  # /metrics stays responsive
        # after the flood: a fresh burst is answered in full
        before = processed
        for i in range(50):
            upstream.send_multipart([b"s", encode_spectrum(f"after{i}", "esca1", intensities=batch.spectra[i % 16])])
        ids = [m["id"] for _, m in d.receive(50, timeout=30)]
        assert ids == [f"after{i}" for i in range(50)]
        assert d.scrape()['xpstream_spectra_processed_total{source="sub"}'] == before + 50
        t = time.monotonic()
        assert d.stop() == 0
        assert time.monotonic() - t < 30
    finally:
        d.close()
        upstream.close(linger=0)
        context.term()
    print(f"flood: sent {sent[0]}, processed {processed:.0f}, dropped {dropped:.0f}, peak RSS {peak:.0f} MB")
