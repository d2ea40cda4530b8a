"""A loopback HTTP server that answers the Hugging Face Hub's file endpoints for local folders.

Tests point `HF_ENDPOINT` at it so the *real* huggingface_hub client (`hf_hub_download`,
`snapshot_download`, `PyTorchModelHubMixin.from_pretrained`) downloads, caches and raises its
real errors, without any network. Served routes (models and datasets alike):

    GET  /api/{models|datasets}/{org}/{name}[/revision/{rev}]      repo info (sha + siblings)
    GET  /api/{models|datasets}/{org}/{name}/tree/{rev}[/{path}]   file listing
    HEAD/GET /[datasets/]{org}/{name}/resolve/{rev}/{path}          file metadata / bytes

    POST /api/repos/create                                           create an empty repo
    POST /api/validate-yaml                                          model-card metadata: valid
    POST /api/{models|datasets}/{org}/{name}/preupload/{rev}         every file "regular"
    POST /api/{models|datasets}/{org}/{name}/commit/{rev}            NDJSON, base64 files

Unknown repos answer 404 with `X-Error-Code: RepoNotFound`, unknown files `EntryNotFound`, the
way the Hub does, so the client raises `RepositoryNotFoundError` / `EntryNotFoundError`. Pushed
repos land in folders under `LocalHub.upload_root` (set it before pushing).
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse


class LocalHub:
    """Repos are plain folders: `LocalHub.add(repo_id, folder, repo_type="model")`."""

    def __init__(self):
        self.repos: dict[tuple[str, str], Path] = {}
        self.upload_root: Path | None = None  # where pushed repos are written
        self.requests: list[
            tuple[str, str]
        ] = []  # (method, path): lets tests prove a download happened
        handler = type("Handler", (_Handler,), {"hub": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def add(self, repo_id: str, folder: str | Path, repo_type: str = "model") -> None:
        self.repos[(repo_type, repo_id)] = Path(folder)

    def start(self) -> LocalHub:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def files(self, repo_type: str, repo_id: str) -> list[str]:
        root = self.repos[(repo_type, repo_id)]
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())

    def sha(self, repo_type: str, repo_id: str) -> str:
        """A commit hash that changes whenever any file of the repo changes."""
        h = hashlib.sha1()
        root = self.repos[(repo_type, repo_id)]
        for f in self.files(repo_type, repo_id):
            h.update(f.encode())
            h.update((root / f).read_bytes())
        return h.hexdigest()


class _Handler(BaseHTTPRequestHandler):
    hub: LocalHub

    def log_message(self, *args):  # keep test output clean
        pass

    def do_HEAD(self):
        self._route(send_body=False)

    def do_GET(self):
        self._route(send_body=True)

    def do_POST(self):
        path = unquote(urlparse(self.path).path)
        self.hub.requests.append(("POST", path))
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.headers.get("Transfer-Encoding") == "chunked":  # NDJSON commits stream
            body = self._read_chunked()
        parts = [p for p in path.split("/") if p]
        if parts == ["api", "validate-yaml"]:  # the model card's metadata: always fine here
            return self._json({"errors": [], "warnings": []}, True)
        if parts == ["api", "repos", "create"]:
            req = json.loads(body or b"{}")
            repo_type = req.get("type") or "model"
            repo_id = f"{req.get('organization') or 'user'}/{req['name']}"
            if "/" in req["name"]:
                repo_id = req["name"]
            folder = self.hub.upload_root / repo_type / repo_id
            folder.mkdir(parents=True, exist_ok=True)
            self.hub.add(repo_id, folder, repo_type)
            return self._json({"url": f"{self.hub.endpoint}/{repo_id}", "name": repo_id}, True)
        if len(parts) >= 6 and parts[0] == "api" and parts[1] in ("models", "datasets"):
            repo_type, repo_id, verb = parts[1][:-1], "/".join(parts[2:4]), parts[4]
            if (repo_type, repo_id) not in self.hub.repos:
                return self._error(404, "RepoNotFound", "Repository not found")
            if verb == "preupload":
                files = json.loads(body)["files"]
                modes = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                         for f in files]  # fmt: skip
                return self._json({"files": modes}, True)
            if verb == "commit":
                root = self.hub.repos[(repo_type, repo_id)]
                for line in body.decode().splitlines():
                    op = json.loads(line) if line.strip() else {}
                    if op.get("key") == "file":
                        target = root / op["value"]["path"]
                        target.parent.mkdir(parents=True, exist_ok=True)
                        target.write_bytes(base64.b64decode(op["value"]["content"]))
                sha = self.hub.sha(repo_type, repo_id)
                url = f"{self.hub.endpoint}/{repo_id}/commit/{sha}"
                return self._json({"commitUrl": url, "commitOid": sha}, True)
        return self._error(404, "EntryNotFound", "Unknown API route")

    def _read_chunked(self) -> bytes:
        out = b""
        while True:
            size = int(self.rfile.readline().strip() or b"0", 16)
            if size == 0:
                self.rfile.readline()
                return out
            out += self.rfile.read(size)
            self.rfile.readline()

    # ---- routing ------------------------------------------------------------------------------
    def _route(self, send_body: bool):
        path = unquote(urlparse(self.path).path)
        self.hub.requests.append((self.command, path))
        parts = [p for p in path.split("/") if p]
        if parts[:1] == ["api"] and len(parts) >= 4 and parts[1] in ("models", "datasets"):
            repo_type = parts[1][:-1]
            repo_id, rest = "/".join(parts[2:4]), parts[4:]
            if (repo_type, repo_id) not in self.hub.repos:
                return self._error(404, "RepoNotFound", "Repository not found")
            if not rest or rest[0] == "revision":
                return self._info(repo_type, repo_id, send_body)
            if rest[0] == "tree":
                return self._tree(repo_type, repo_id, "/".join(rest[2:]), send_body)
            return self._error(404, "EntryNotFound", "Unknown API route")
        repo_type = "model"
        if parts[:1] == ["datasets"]:
            repo_type, parts = "dataset", parts[1:]
        if len(parts) >= 5 and parts[2] == "resolve":
            repo_id, filename = "/".join(parts[:2]), "/".join(parts[4:])
            return self._file(repo_type, repo_id, filename, send_body)
        return self._error(404, "RepoNotFound", "Unknown route")

    # ---- responses ----------------------------------------------------------------------------
    def _json(self, obj, send_body: bool):
        body = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def _error(self, status: int, code: str, message: str):
        self.send_response(status)
        self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _info(self, repo_type: str, repo_id: str, send_body: bool):
        siblings = [{"rfilename": f} for f in self.hub.files(repo_type, repo_id)]
        sha = self.hub.sha(repo_type, repo_id)
        self._json({"id": repo_id, "sha": sha, "siblings": siblings, "private": False}, send_body)

    def _tree(self, repo_type: str, repo_id: str, prefix: str, send_body: bool):
        root = self.hub.repos[(repo_type, repo_id)]
        entries = []
        for f in self.hub.files(repo_type, repo_id):
            if prefix and not f.startswith(prefix.rstrip("/") + "/"):
                continue
            data = (root / f).read_bytes()
            entries.append({"type": "file", "path": f, "size": len(data), "oid": _git_oid(data)})
        self._json(entries, send_body)

    def _file(self, repo_type: str, repo_id: str, filename: str, send_body: bool):
        if (repo_type, repo_id) not in self.hub.repos:
            return self._error(404, "RepoNotFound", "Repository not found")
        target = self.hub.repos[(repo_type, repo_id)] / filename
        if not target.is_file():
            return self._error(404, "EntryNotFound", f"{filename} does not exist")
        data = target.read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("ETag", f'"{_git_oid(data)}"')
        self.send_header("X-Repo-Commit", self.hub.sha(repo_type, repo_id))
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        if send_body:
            self.wfile.write(data)


def _git_oid(data: bytes) -> str:
    """The git blob id, as the Hub reports for non-LFS files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
