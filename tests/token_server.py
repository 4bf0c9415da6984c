#!/usr/bin/env python3
"""A token server for tests/pull.rs: the Bearer flow of a real distribution registry.

    token_server.py KEY PORTFILE CERT LOGFILE

Answers GET /token?service=S&scope=repository:NAME:ACTIONS for the Basic credentials
alice:secret (anything else: 401) with a JWT the registry accepts: RS256, signed with
KEY by `openssl dgst`, the certificate CERT (which the registry's rootcertbundle
names) in its x5c header, issuer "capsule-test", audience S, the scopes asked for.
Each request is appended to LOGFILE as `PATH auth=Basic|none`.
"""
import base64
import http.server
import json
import os
import subprocess
import sys
import time
import urllib.parse

key, portfile, cert, logfile = sys.argv[1:5]
log = open(logfile, "a", buffering=1)
ALICE = "Basic " + base64.b64encode(b"alice:secret").decode()
with open(cert) as f:
    pem = f.read()
der = base64.b64decode("".join(l for l in pem.splitlines() if "-----" not in l))


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(service, scopes):
    access = []
    for scope in scopes:
        kind, _, rest = scope.partition(":")
        name, _, actions = rest.rpartition(":")
        access.append({"type": kind, "name": name, "actions": actions.split(",")})
    now = int(time.time())
    header = {"alg": "RS256", "typ": "JWT", "x5c": [base64.b64encode(der).decode()]}
    claims = {"iss": "capsule-test", "sub": "alice", "aud": service, "exp": now + 300,
              "nbf": now - 10, "iat": now, "jti": str(now) + str(os.getpid()), "access": access}
    signing = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
    signature = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key], input=signing.encode(),
                               capture_output=True, check=True).stdout
    return signing + "." + b64url(signature)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, code, body):
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        auth = (self.headers.get("Authorization") or "none").split(" ")[0]
        log.write(f"{self.path} auth={auth}\n")
        url = urllib.parse.urlparse(self.path)
        if url.path != "/token":
            return self.reply(404, b"{}")
        if self.headers.get("Authorization") != ALICE:
            return self.reply(401, b'{"details":"bad credentials"}')
        query = urllib.parse.parse_qs(url.query)
        jwt = token(query.get("service", [""])[0], query.get("scope", []))
        self.reply(200, json.dumps({"token": jwt, "access_token": jwt, "expires_in": 300}).encode())


class Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


server = Server(("127.0.0.1", 0), Handler)
with open(portfile + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
os.rename(portfile + ".tmp", portfile)
server.serve_forever()
