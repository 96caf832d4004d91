#!/usr/bin/env python3
"""A minimal POST/PUT-only HTTP sink, as people write them with Python's standard library.

It implements nothing but POST and PUT: HEAD answers 501 (the standard library's answer to a
method a handler does not implement) or, with --head, 404 or 405; PATCH answers 405. Each
upload is written to <dir>/<last path segment> and replaces it only when the body arrived
whole. --refuse-chunked answers 411 to a body without Content-Length, as many servers and
proxies do. --rate throttles how fast bodies are read (bytes a second). Every request line is
appended to <dir>/requests.log as JSON (method, path, headers) before it is answered. The
first line on stdout is "listening on <port>".
"""

import argparse
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()


def parse_args():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--head", type=int, default=501, choices=[404, 405, 501])
    parser.add_argument("--refuse-chunked", action="store_true")
    parser.add_argument("--rate", type=int, default=0)
    return parser.parse_args()


ARGS = parse_args()


class Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def parse_request(self):
        ok = super().parse_request()
        if ok:
            entry = {
                "method": self.command,
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
            }
            with LOCK, open(os.path.join(ARGS.dir, "requests.log"), "a") as log:
                log.write(json.dumps(entry) + "\n")
        return ok

    def log_message(self, format, *args):
        sys.stderr.write("post_sink: " + (format % args) + "\n")

    def answer(self, status, body=b"", close=False):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def do_PATCH(self):
        self.answer(405, b"PATCH is not supported here\n", close=True)

    def read_exactly(self, out, length):
        """Reads `length` bytes into `out`; False when the client went away first."""
        started = time.monotonic()
        done = 0
        while done < length:
            chunk = self.rfile.read(min(65536, length - done))
            if not chunk:
                return False
            out.write(chunk)
            done += len(chunk)
            if ARGS.rate:
                ahead = done / ARGS.rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
        return True

    def receive(self):
        name = os.path.basename(self.path.split("?", 1)[0]) or "upload"
        target = os.path.join(ARGS.dir, name)
        partial = target + ".part"
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        length = self.headers.get("Content-Length")
        if chunked and ARGS.refuse_chunked or not chunked and length is None:
            self.answer(411, b"a Content-Length is required\n", close=True)
            return
        with open(partial, "wb") as out:
            if chunked:
                while True:
                    size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        break
                    if not self.read_exactly(out, size):
                        return
                    self.rfile.readline()
            elif not self.read_exactly(out, int(length)):
                return
        os.replace(partial, target)
        self.answer(201, b"stored\n")

    do_POST = receive
    do_PUT = receive


if ARGS.head != 501:
    # 404 (a route that only exists for POST) or 405 (a framework that knows the route).
    def do_HEAD(self):
        self.send_response(ARGS.head)
        if ARGS.head == 405:
            self.send_header("Allow", "POST, PUT")
        self.send_header("Content-Length", "0")
        self.end_headers()

    Sink.do_HEAD = do_HEAD


def main():
    server = ThreadingHTTPServer(("127.0.0.1", ARGS.port), Sink)
    server.daemon_threads = True
    print(f"listening on {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
