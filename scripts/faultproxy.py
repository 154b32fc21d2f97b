#!/usr/bin/env python3
"""A fault-injecting HTTP proxy for drctl's tests: forwards requests to an upstream (a real
RGW) unchanged, except for the faults it is told to inject into the next requests.

  faultproxy.py --upstream 127.0.0.1:PORT --port-file FILE

Control (never forwarded):
  POST /__fault  {"mode": "503"|"slowdown"|"reset"|"cut"|"stall"|"stallbody"|"shortlength", "count": N,
                  "after_bytes": B, "seconds": S, "match": "GET"}
       queues N faults for the next requests (of method `match`, if given):
       cut          B bytes of the body, then a reset
       stall        no answer for S seconds, then a reset
       stallbody    B bytes of the body, then silence for S seconds (a read timeout), then a reset;
                    a client that gives up first is logged as ["ABANDONED", path, null]
       shortlength  a 200 whose Content-Length and body both stop B bytes short: a truncated
                    object that looks complete to HTTP
  GET  /__fault  -> {"requests": [[method, path, range], ...], "faults_left": N}
Loopback only; it stops on SIGTERM, or when the process that started it is gone.
"""
import argparse, http.client, json, os, socket, struct, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

lock = threading.Lock()
faults = []          # queue of dicts
log = []             # (method, path, range)


def take_fault(method):
    with lock:
        for i, f in enumerate(faults):
            if f.get("match") in (None, method):
                f["count"] -= 1
                if f["count"] <= 0:
                    faults.pop(i)
                return dict(f)
    return None


class Proxy(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    upstream = None

    def log_message(self, *a):
        pass

    def _control(self):
        if self.command == "POST":
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            plan = json.loads(body or b"{}")
            plan.setdefault("count", 1)
            with lock:
                faults.append(plan)
            out = b"{}"
        else:
            with lock:
                out = json.dumps({"requests": log, "faults_left": sum(f["count"] for f in faults)}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def _reset(self):
        # SO_LINGER 0: close with RST, as a crashed peer or a middlebox would.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True

    def _client_gives_up(self, seconds):
        """Silent for `seconds`, watching whether the client closes the connection first."""
        import select
        end = time.time() + seconds
        while time.time() < end:
            r, _, _ = select.select([self.connection], [], [], 0.1)
            if r:
                try:
                    if self.connection.recv(1, socket.MSG_PEEK) == b"":
                        return True
                except OSError:
                    return True
        return False

    def _handle(self):
        if self.path.startswith("/__fault"):
            return self._control()
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length) if length else b""
        with lock:
            log.append([self.command, self.path, self.headers.get("Range")])
        fault = take_fault(self.command)
        mode = fault and fault.get("mode")
        if mode in ("503", "slowdown"):
            code = "SlowDown" if mode == "slowdown" else "ServiceUnavailable"
            out = f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>injected</Message></Error>'.encode()
            self.send_response(503)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(out)
            return
        if mode == "reset":
            return self._reset()
        if mode == "stall":
            time.sleep(float(fault.get("seconds", 5)))
            return self._reset()
        conn = http.client.HTTPConnection(self.upstream, timeout=120)
        headers = {k: v for k, v in self.headers.items()}
        conn.request(self.command, self.path, body=body, headers=headers)
        resp = conn.getresponse()
        self.send_response_only(resp.status, resp.reason)
        for k, v in resp.getheaders():
            if k.lower() not in ("connection", "transfer-encoding") and not (mode == "shortlength" and k.lower() == "content-length"):
                self.send_header(k, v)
        if mode == "shortlength" and self.command == "GET":
            data = resp.read()
            conn.close()
            data = data[: max(0, len(data) - fault.get("after_bytes", 1))]
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        chunked = resp.getheader("Content-Length") is None and self.command != "HEAD"
        if chunked:
            data = resp.read()
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            conn.close()
            return
        sent, limit, hit = 0, (fault.get("after_bytes", 0) if mode in ("cut", "stallbody") else None), False
        try:
            self.end_headers()
            while self.command != "HEAD":
                chunk = resp.read(65536)
                if not chunk:
                    break
                if limit is not None and sent + len(chunk) >= limit:
                    self.wfile.write(chunk[: max(0, limit - sent)])
                    self.wfile.flush()
                    hit = True
                    break
                self.wfile.write(chunk)
                sent += len(chunk)
        except OSError:
            # The client left before the fault began (e.g. its own timeout on a slow upstream).
            with lock:
                log.append(["LEFT", self.path, str(sent)])
            conn.close()
            return
        conn.close()
        if hit:
            if mode == "stallbody" and self._client_gives_up(float(fault.get("seconds", 5))):
                with lock:
                    log.append(["ABANDONED", self.path, None])
                return
            return self._reset()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--port-file", required=True)
    args = ap.parse_args()
    Proxy.upstream = args.upstream
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    srv.daemon_threads = True
    with open(args.port_file + ".tmp", "w") as f:
        f.write(str(srv.server_address[1]))
    os.rename(args.port_file + ".tmp", args.port_file)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    # Until SIGTERM, or until the test that started it is gone (this process reparented), so a
    # crashed test leaves no proxy behind; never until a pipe's EOF, which a daemon that
    # inherited the pipe would put off forever.
    parent = os.getppid()
    while os.getppid() == parent:
        time.sleep(0.5)
    srv.shutdown()


if __name__ == "__main__":
    main()
