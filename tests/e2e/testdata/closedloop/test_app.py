import threading
import urllib.request
from http.server import ThreadingHTTPServer

import app


def test_greeting():
    assert app.greeting("shiploop") == "hello, shiploop\n"


def test_index():
    assert app.index() == "hello, world\n"


def test_healthz():
    server = ThreadingHTTPServer(("127.0.0.1", 0), app.Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = "http://127.0.0.1:%d/healthz" % server.server_address[1]
        with urllib.request.urlopen(url, timeout=5) as resp:
            assert resp.status == 200
            assert resp.read() == b"ok\n"
    finally:
        server.shutdown()
        server.server_close()
