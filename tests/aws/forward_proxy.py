"""A recording forward proxy, as a VPC's egress proxy (squid and the like) works: plain http requests
in absolute form are forwarded, https goes through CONNECT tunnels. For the agent's proxy tests.

Usage: forward_proxy.py LISTEN_PORT LOG [USER:PASSWORD]
  With USER:PASSWORD, requests without that Proxy-Authorization are answered 407.
Appends one JSON line per request to LOG: {"method", "target", "proxy_auth" (bool), "key" (the access
key ID in the request's SigV4 Authorization, if any), "amz_target" (its X-Amz-Target), "assumed" (the AccessKeyId in an sts:AssumeRole
answer, if any), "status"}. Prints "ready PORT" once listening.
"""
import base64
import http.client
import http.server
import json
import re
import select
import socket
import sys
import threading
import urllib.parse

port, log_path = int(sys.argv[1]), sys.argv[2]
want = "Basic " + base64.b64encode(sys.argv[3].encode()).decode() if len(sys.argv) > 3 else None
lock = threading.Lock()


def record(**entry):
    with lock, open(log_path, "a") as f:
        f.write(json.dumps(entry) + "\n")


class Proxy(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def authorized(self):
        ok = want is None or self.headers.get("Proxy-Authorization") == want
        if not ok:
            self.send_response(407)
            self.send_header("Proxy-Authenticate", 'Basic realm="egress"')
            self.send_header("Content-Length", "0")
            self.end_headers()
        return ok

    def do_CONNECT(self):
        auth = self.headers.get("Proxy-Authorization") is not None
        if not self.authorized():
            record(method="CONNECT", target=self.path, proxy_auth=auth, status=407)
            return
        host, _, p = self.path.rpartition(":")
        try:
            upstream = socket.create_connection((host, int(p)), timeout=10)
        except OSError:
            self.send_response(502)
            self.send_header("Content-Length", "0")
            self.end_headers()
            record(method="CONNECT", target=self.path, proxy_auth=auth, status=502)
            return
        self.send_response(200, "Connection established")
        self.end_headers()
        record(method="CONNECT", target=self.path, proxy_auth=auth, status=200)
        conns = [self.connection, upstream]
        while True:
            readable, _, _ = select.select(conns, [], [], 30)
            if not readable:
                break
            for s in readable:
                data = s.recv(65536)
                if not data:
                    upstream.close()
                    self.close_connection = True
                    return
                (upstream if s is self.connection else self.connection).sendall(data)

    def forward(self):
        auth = self.headers.get("Proxy-Authorization") is not None
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if not self.authorized():
            record(method=self.command, target=self.path, proxy_auth=auth, status=407)
            return
        url = urllib.parse.urlsplit(self.path)
        if not url.scheme:
            self.send_response(400)
            self.send_header("Content-Length", "0")
            self.end_headers()
            record(method=self.command, target=self.path, proxy_auth=auth, status=400)
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("proxy-authorization", "proxy-connection")}
        conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=30)
        conn.request(self.command, url.path + ("?" + url.query if url.query else ""), body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        key = re.search(r"Credential=([^/]+)/", self.headers.get("Authorization", ""))
        assumed = re.search(rb"<AccessKeyId>([A-Z0-9]+)</AccessKeyId>", data)
        record(method=self.command, target=self.path, proxy_auth=auth, status=resp.status,
               key=key.group(1) if key else None, amz_target=self.headers.get("X-Amz-Target"), assumed=assumed.group(1).decode() if assumed else None)
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = forward


server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Proxy)
server.daemon_threads = True
print(f"ready {server.server_address[1]}", flush=True)
server.serve_forever()
