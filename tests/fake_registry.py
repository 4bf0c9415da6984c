#!/usr/bin/env python3
"""A fake OCI registry for tests/pull.rs, serving an OCI image layout read-only.

    fake_registry.py LAYOUT PORTFILE LOGFILE MODE

MODE:
  plain    serves the layout as it is (tests/pull.rs gives it uncompressed layers);
  corrupt  serves the last layer of every manifest with one byte flipped (same size,
           with the right Docker-Content-Digest: a client must not trust it);
  cut      answers the first manifest request 503 (Retry-After: 0), and sends the
           first response for that layer only halfway, then closes the connection;
           later requests honour Range;
  bearer   asks for a Bearer token (challenge -> /token with Basic alice:secret);
  nopatch  takes pushes (blobs kept in memory, checked against their digests) but
           refuses chunked uploads: PATCH answers 405, as some registries do;
  patchcut takes pushes with chunked uploads, but reads only half of the second PATCH,
           keeps that half and closes the connection; GET on the upload then reports
           what it has (Range: 0-LAST), and a PATCH not starting there answers 416.

In the push modes a blob is there (HEAD) only once pushed to this server.

Each request is appended to LOGFILE as `METHOD PATH range=… auth=Basic|Bearer|none`.
The port is written to PORTFILE once the server listens.
"""
import base64
import hashlib
import http.server
import uuid
import json
import os
import socket
import sys

layout, portfile, logfile, mode = sys.argv[1:5]
log = open(logfile, "a", buffering=1)
index = json.load(open(os.path.join(layout, "index.json")))
tags = {m["annotations"]["org.opencontainers.image.ref.name"]: m for m in index["manifests"]}


def blob(digest):
    with open(os.path.join(layout, "blobs", "sha256", digest.split(":", 1)[1]), "rb") as f:
        return f.read()


targets = set()
for desc in index["manifests"]:
    targets.add(json.loads(blob(desc["digest"]))["layers"][-1]["digest"])
cut_done = set()
uploads = {}  # upload id -> bytes so far
pushed = {}  # digest -> bytes
patches = [0]
PUSH_MODES = ("nopatch", "patchcut")
TOKEN = "t0ken-for-alice"
ALICE = "Basic " + base64.b64encode(b"alice:secret").decode()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, code, body=b"", headers=None):
        self.send_response(code)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def authorized(self):
        if mode != "bearer" or self.headers.get("Authorization") == "Bearer " + TOKEN:
            return True
        port = self.server.server_address[1]
        challenge = f'Bearer realm="http://127.0.0.1:{port}/token",service="fake"'
        self.reply(401, b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}',
                   {"WWW-Authenticate": challenge, "Content-Type": "application/json"})
        return False

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        auth = (self.headers.get("Authorization") or "none").split(" ")[0]
        log.write(f"{self.command} {self.path} range={self.headers.get('Range')} auth={auth}\n")
        if self.path.startswith("/token"):
            if self.headers.get("Authorization") != ALICE:
                return self.reply(401, b'{"details":"bad credentials"}')
            return self.reply(200, json.dumps({"token": TOKEN}).encode(),
                              {"Content-Type": "application/json"})
        if not self.authorized():
            return
        if self.path == "/v2/":
            return self.reply(200, b"{}")
        path = self.path.split("?")[0]
        if mode in PUSH_MODES and "/blobs/uploads/" in path:
            upload = path.rsplit("/", 1)[1]
            if upload not in uploads:
                return self.reply(404)
            have = len(uploads[upload])
            return self.reply(204, b"", {"Location": path, "Range": f"0-{have - 1}"})
        if mode in PUSH_MODES and "/blobs/" in path:
            ref = path.rsplit("/", 1)[1]
            if ref not in pushed:
                return self.reply(404)
            return self.reply(200, pushed[ref], {"Docker-Content-Digest": ref})
        parts = self.path.split("/")
        if len(parts) != 5:
            return self.reply(404)
        _, _, _name, kind, ref = parts
        if kind == "manifests" and mode == "cut" and "manifest" not in cut_done:
            cut_done.add("manifest")
            return self.reply(503, b"busy", {"Retry-After": "0"})
        if kind == "manifests" and mode == "schema1":
            # What registries still serve for images pushed by docker before 1.10.
            doc = {"schemaVersion": 1, "name": _name, "tag": ref, "architecture": "amd64",
                   "fsLayers": [], "history": [], "signatures": []}
            return self.reply(200, json.dumps(doc).encode(), {
                "Content-Type": "application/vnd.docker.distribution.manifest.v1+prettyjws"})
        if kind == "manifests":
            desc = tags.get(ref) or next((m for m in index["manifests"] if m["digest"] == ref), None)
            if desc is None:
                return self.reply(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}')
            return self.reply(200, blob(desc["digest"]),
                              {"Content-Type": desc["mediaType"], "Docker-Content-Digest": desc["digest"]})
        if kind != "blobs":
            return self.reply(404)
        try:
            body = blob(ref)
        except (OSError, IndexError):
            return self.reply(404)
        if ref in targets and mode == "corrupt":
            middle = len(body) // 2
            body = body[:middle] + bytes([body[middle] ^ 1]) + body[middle + 1:]
        if ref in targets and mode == "cut" and ref not in cut_done:
            cut_done.add(ref)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        wanted = self.headers.get("Range")
        if wanted and wanted.startswith("bytes=") and wanted.endswith("-"):
            start = int(wanted[len("bytes="):-1])
            return self.reply(206, body[start:],
                              {"Content-Range": f"bytes {start}-{len(body) - 1}/{len(body)}"})
        return self.reply(200, body, {"Docker-Content-Digest": ref})


    def body(self, limit=None):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length if limit is None else min(limit, length))

    def do_POST(self):
        log.write(f"{self.command} {self.path}\n")
        self.body()
        upload = uuid.uuid4().hex
        uploads[upload] = b""
        name = self.path.split("/")[2]
        self.reply(202, b"", {"Location": f"/v2/{name}/blobs/uploads/{upload}", "Range": "0-0"})

    def do_PATCH(self):
        log.write(f"{self.command} {self.path} content-range={self.headers.get('Content-Range')}\n")
        path = self.path.split("?")[0]
        upload = path.rsplit("/", 1)[1]
        if mode == "nopatch":
            self.body()
            return self.reply(405, b'{"errors":[{"code":"UNSUPPORTED","message":"chunked uploads are not supported"}]}')
        if upload not in uploads:
            self.body()
            return self.reply(404)
        start = int((self.headers.get("Content-Range") or "0-0").split("-")[0])
        if start != len(uploads[upload]):
            self.body()
            return self.reply(416, b"", {"Range": f"0-{len(uploads[upload]) - 1}"})
        patches[0] += 1
        if patches[0] == 2:
            length = int(self.headers.get("Content-Length") or 0)
            uploads[upload] += self.body(length // 2)
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        uploads[upload] += self.body()
        self.reply(202, b"", {"Location": path, "Range": f"0-{len(uploads[upload]) - 1}"})

    def do_PUT(self):
        log.write(f"{self.command} {self.path} length={self.headers.get('Content-Length')}\n")
        data = self.body()
        path, _, query = self.path.partition("?")
        if "/manifests/" in path:
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            pushed[digest] = data
            return self.reply(201, b"", {"Docker-Content-Digest": digest})
        upload = path.rsplit("/", 1)[1]
        if upload not in uploads:
            return self.reply(404)
        digest = dict(kv.split("=", 1) for kv in query.split("&") if "=" in kv).get("digest", "")
        digest = digest.replace("%3A", ":")
        whole = uploads.pop(upload) + data
        if "sha256:" + hashlib.sha256(whole).hexdigest() != digest:
            return self.reply(400, b'{"errors":[{"code":"DIGEST_INVALID","message":"digest does not match"}]}')
        pushed[digest] = whole
        self.reply(201, b"", {"Docker-Content-Digest": digest})


class Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        # A client that exits drops its idle keep-alive connections: not an error.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


server = Server(("127.0.0.1", 0), Handler)
with open(portfile + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
os.rename(portfile + ".tmp", portfile)
server.serve_forever()
