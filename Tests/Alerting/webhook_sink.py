#!/usr/bin/env python3
"""A webhook sink for drctl's alert tests: answers POSTs to /<path> with the status set for that
path (200 unless told), and keeps every body it received.

  webhook_sink.py --port-file FILE
  POST /__status {"path": "/slack", "status": 404}   the answer for that path from now on
  GET  /__received                                    {"items": [{"path", "status", "body"}]}
Stops on SIGTERM, or when the process that started it is gone.
"""
import argparse, json, os, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

lock = threading.Lock()
statuses, received = {}, []


class Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def reply(self, code, body=b"{}"):
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/__received":
            with lock:
                return self.reply(200, json.dumps({"items": received}).encode())
        self.reply(404)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0") or 0))
        if self.path == "/__status":
            req = json.loads(body)
            with lock:
                statuses[req["path"]] = req["status"]
            return self.reply(200)
        with lock:
            code = statuses.get(self.path, 200)
            received.append({"path": self.path, "status": code, "body": body.decode("utf-8", "replace")})
        # Slack's answer to a revoked incoming webhook: 404 "no_team" / "channel_not_found" as text.
        self.reply(code, b"ok" if code == 200 else b"no_service")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port-file", required=True)
    args = ap.parse_args()
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    open(args.port_file, "w").write(str(srv.server_address[1]))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    # Until SIGTERM, or until the test that started it is gone (this process reparented): never
    # until a pipe's EOF, which a daemon that inherited the pipe would put off forever.
    parent = os.getppid()
    while os.getppid() == parent:
        time.sleep(0.5)


if __name__ == "__main__":
    main()
