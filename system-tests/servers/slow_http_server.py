#!/usr/bin/env python3
"""Python's http.server (SimpleHTTPRequestHandler: no Range support, HTTP/1.0 keep-alive off)
serving <dir>, with bodies throttled to --rate bytes a second so that a test can act while a
transfer runs. The first line on stdout is "listening on <port>".
"""

import argparse
import functools
import sys
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

parser = argparse.ArgumentParser()
parser.add_argument("--dir", required=True)
parser.add_argument("--port", type=int, default=0)
parser.add_argument("--rate", type=int, default=0)
ARGS = parser.parse_args()


class Slow(SimpleHTTPRequestHandler):
    def copyfile(self, source, outputfile):
        started = time.monotonic()
        done = 0
        while True:
            chunk = source.read(65536)
            if not chunk:
                return
            outputfile.write(chunk)
            done += len(chunk)
            if ARGS.rate:
                ahead = done / ARGS.rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)

    def log_message(self, format, *args):
        sys.stderr.write("slow_http_server: " + (format % args) + "\n")


def main():
    handler = functools.partial(Slow, directory=ARGS.dir)
    server = ThreadingHTTPServer(("127.0.0.1", ARGS.port), handler)
    server.daemon_threads = True
    print(f"listening on {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
