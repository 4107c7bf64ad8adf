"""A small in-memory Hugging Face Hub on 127.0.0.1: enough of the HTTP API for huggingface_hub's
create_repo + upload_folder (preupload, tree listing, NDJSON commits) and hf_hub_download (resolve) to run
unchanged against it.

    with FakeHub() as hub:                       # hub.endpoint -> "http://127.0.0.1:PORT"
        HfApi(endpoint=hub.endpoint, token="hf_x").upload_folder(...)
        hub.files("datasets", "user/name")        # {path: bytes} of the repo's head

Every file is answered as a "regular" (non-LFS) upload so that the commit carries the bytes inline; the
server records each request path so that tests can check what the client asked for.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import yaml


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hub: FakeHub

    def log_message(self, *args) -> None:  # quiet
        pass

    def _send(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_POST(self) -> None:
        url = urlparse(self.path)
        body = self._body()
        self.hub.requests.append(("POST", url.path))
        parts = url.path.strip("/").split("/")
        if url.path == "/api/repos/create":
            req = json.loads(body)
            repo = req["name"] if "/" in req["name"] else f"{req.get('organization') or 'user'}/{req['name']}"
            self.hub.repos.setdefault((req.get("type", "model") + "s", repo), {})
            return self._send(200, {"url": f"{self.hub.endpoint}/{req.get('type')}s/{repo}"})
        if url.path == "/api/validate-yaml":  # the dataset card's front matter must at least be YAML
            content = json.loads(body)["content"]
            try:
                yaml.safe_load(content.split("---")[1] if content.startswith("---") else "")
            except yaml.YAMLError as err:
                return self._send(400, {"errors": [{"message": str(err)}]})
            return self._send(200, {"errors": [], "warnings": []})
        if len(parts) == 6 and parts[0] == "api" and parts[4] == "preupload":
            files = json.loads(body)["files"]
            modes = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]
            return self._send(200, {"files": modes, "commitOid": self.hub.head})
        if len(parts) == 6 and parts[0] == "api" and parts[4] == "commit":
            repo = self.hub.repos[(parts[1], f"{parts[2]}/{parts[3]}")]
            for line in body.decode().splitlines():
                op = json.loads(line)
                if op["key"] == "file":
                    repo[op["value"]["path"]] = base64.b64decode(op["value"]["content"])
                elif op["key"] == "deletedFile":
                    repo.pop(op["value"]["path"], None)
                elif op["key"] == "deletedFolder":
                    prefix = op["value"]["path"].rstrip("/") + "/"
                    for p in [p for p in repo if p.startswith(prefix)]:
                        del repo[p]
            self.hub.head = hashlib.sha1(json.dumps(sorted(repo)).encode()).hexdigest()
            commit_url = f"{self.hub.endpoint}/{parts[1]}/{parts[2]}/{parts[3]}/commit/{self.hub.head}"
            return self._send(200, {"commitUrl": commit_url, "commitOid": self.hub.head})
        self._send(404, {"error": f"fake hub: no POST {url.path}"})

    def _resolve(self, path: str) -> tuple[str, bytes] | None:
        """[datasets/]{ns}/{name}/resolve/{revision}/{file}: the file's bytes at the repo's head."""
        parts = path.strip("/").split("/")
        kind = "models"
        if parts and parts[0] in ("datasets", "spaces"):
            kind, parts = parts[0], parts[1:]
        if len(parts) < 5 or parts[2] != "resolve":
            return None
        repo = self.hub.repos.get((kind, f"{parts[0]}/{parts[1]}"), {})
        name = "/".join(parts[4:])
        return (name, repo[name]) if name in repo else None

    def _send_file(self, data: bytes, *, body: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("ETag", f'"{hashlib.sha1(data).hexdigest()}"')
        self.send_header("X-Repo-Commit", self.hub.head)
        self.end_headers()
        if body:
            self.wfile.write(data)

    def do_HEAD(self) -> None:
        url = urlparse(self.path)
        self.hub.requests.append(("HEAD", url.path))
        found = self._resolve(url.path)
        if found is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.send_header("X-Error-Code", "EntryNotFound")
            self.end_headers()
            return
        self._send_file(found[1], body=False)

    def do_GET(self) -> None:
        url = urlparse(self.path)
        self.hub.requests.append(("GET", url.path))
        found = self._resolve(url.path)
        if found is not None:
            return self._send_file(found[1], body=True)
        parts = url.path.strip("/").split("/")
        # /api/{kind}/{ns}/{name}/tree/{revision}[/{path}]
        if len(parts) >= 6 and parts[0] == "api" and parts[4] == "tree":
            repo = self.hub.repos.get((parts[1], f"{parts[2]}/{parts[3]}"))
            if repo is None:
                return self._send(404, {"error": "repo not found"})
            under = "/".join(parts[6:])
            recursive = parse_qs(url.query).get("recursive", ["false"])[0].lower() == "true"

            def listed(p: str) -> bool:
                inside = not under or p.startswith(under + "/")
                return inside and (recursive or "/" not in p[len(under) :].lstrip("/"))

            entries = [
                {"type": "file", "path": p, "size": len(b), "oid": hashlib.sha1(b).hexdigest()}
                for p, b in sorted(repo.items())
                if listed(p)
            ]
            return self._send(200, entries)
        self._send(404, {"error": f"fake hub: no GET {url.path}"})


class FakeHub:
    def __init__(self) -> None:
        self.repos: dict[tuple[str, str], dict[str, bytes]] = {}
        self.requests: list[tuple[str, str]] = []
        self.head = "0" * 40
        handler = type("Handler", (_Handler,), {"hub": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"

    def files(self, kind: str, repo: str) -> dict[str, bytes]:
        return dict(self.repos[(kind, repo)])

    def __enter__(self) -> FakeHub:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
