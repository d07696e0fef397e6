"""A tiny greeting service, deployed by shiploop.

sentry_sdk takes the release and the environment from SENTRY_RELEASE and
SENTRY_ENVIRONMENT, which shiploop's deploy jobs set and deploy.sh passes
on; only the DSN is configured here.
"""
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import sentry_sdk

STATS = {"served": 0, "errors": 0}


def greeting(name):
    return "hello, %s\n" % name


def index():
    return greeting("world")


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        name = "GET " + self.path
        with sentry_sdk.start_transaction(op="http.server", name=name):
            if self.path == "/healthz":
                self.answer(200, "ok\n")
                return
            try:
                body = index()
                STATS["served"] += 1
            except Exception as e:
                STATS["errors"] += 1
                sentry_sdk.capture_exception(e)
                self.answer(500, "internal error\n")
                return
            self.answer(200, body)

    def answer(self, status, body):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt, *args):
        sys.stderr.write("%s\n" % (fmt % args))


def stop(signum, frame):
    sys.exit(0)  # atexit flushes what sentry_sdk still holds


def main():
    sentry_sdk.init(dsn=os.environ["SENTRY_DSN"], traces_sample_rate=1.0)
    signal.signal(signal.SIGTERM, stop)
    port = int(os.environ["PORT"])
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print("serving on port %d" % port, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
