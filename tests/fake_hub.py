"""A local HTTP server that answers like the Hugging Face Hub, for the real huggingface_hub client.

It serves the routes the lock uses (`HF_ENDPOINT=http://127.0.0.1:PORT`):
- GET  /api/models/{repo}[/revision/{rev}]  model info (with `?blobs=True`: file sizes, LFS)
- GET  /api/models/{repo}/tree/{rev}          the file list (snapshot_download)
- HEAD /{repo}/resolve/{rev}/{file}          file metadata headers (X-Repo-Commit, ETag, size)
- GET  /{repo}/resolve/{rev}/{file}          file content, honouring `Range`
and errors as the Hub spells them (`X-Error-Code: RepoNotFound | RevisionNotFound |
EntryNotFound | GatedRepo`). Safetensors files are real safetensors headers followed by zeros,
so the client parses them as it parses the Hub's.

A repo can also misbehave: `stall` (accept the request, never answer), `fail` (an HTTP error
whose body echoes the request's Authorization header) or `info` (fields of the model info
replaced: a Hub that lies).
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional

DTYPE_BYTES = {"F32": 4, "F16": 2, "BF16": 2, "I32": 4, "I8": 1, "U8": 1}


def safetensors_file(tensors: dict[str, tuple[str, list[int]]]) -> bytes:
    """A safetensors file: 8-byte header length, JSON header, tensor data (zeros)."""
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, (dtype, shape) in tensors.items():
        size = DTYPE_BYTES[dtype]
        for dim in shape:
            size *= dim
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + bytes(offset)


@dataclass
class Repo:
    files: dict[str, bytes]
    sha: str
    gated: object = False  # False, "auto" or "manual"
    tokens: tuple[str, ...] = ()  # tokens that accepted the license (gated repos)
    revisions: dict[str, str] = field(default_factory=dict)  # branch -> sha
    stall: Optional[str] = None  # "info" (model info) or "files" (/resolve/): never answered
    fail: Optional[int] = None  # every request answered with this HTTP status
    info: dict = field(default_factory=dict)  # model info fields to replace

    def resolve(self, revision: Optional[str]) -> Optional[str]:
        branches = {"main": self.sha, **self.revisions}
        if revision in branches.values():
            return revision
        return branches.get(revision or "main")


class FakeHub:
    def __init__(self, repos: dict[str, Repo]):
        self.repos = repos
        self.requests: list[tuple[str, str]] = []  # (method, path)
        self.released = threading.Event()  # set on exit: stalled requests end
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                hub.handle(self, "GET")

            def do_HEAD(self):
                hub.handle(self, "HEAD")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeHub":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()

    @staticmethod
    def _error(h: BaseHTTPRequestHandler, status: int, code: str, message: str, method: str) -> None:
        body = json.dumps({"error": message}).encode()
        h.send_response(status)
        if code:
            h.send_header("X-Error-Code", code)
        h.send_header("X-Error-Message", message)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if method == "GET":
            h.wfile.write(body)

    def handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        path = h.path.split("?", 1)[0]
        self.requests.append((method, path))
        api = re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?", path)
        tree = re.fullmatch(r"/api/models/([^/]+/[^/]+)/tree/([^/]+)", path)
        resolve = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        match = api or tree or resolve
        name = match[1] if match else None
        repo = self.repos.get(name) if name else None
        if repo is None:
            return self._error(h, 404, "RepoNotFound", "Repository not found", method)
        if repo.stall and repo.stall == ("info" if api else "files" if resolve else None):
            self.released.wait(60)  # the connection stays open, no byte of an answer
            return
        if repo.fail:  # a server that quotes the request back, credentials included
            echo = f"internal error handling request with Authorization: {h.headers.get('Authorization')}"
            return self._error(h, repo.fail, "", echo, method)
        sha = repo.resolve(match[2])
        if sha is None:
            return self._error(h, 404, "RevisionNotFound", "Invalid rev id", method)
        if api:
            return self._model_info(h, name, repo, sha)
        if tree:
            return self._json(h, [self._sibling(f, c, tree=True) for f, c in repo.files.items()])
        return self._file(h, name, repo, sha, resolve[3], method)

    @staticmethod
    def _sibling(fname: str, content: bytes, tree: bool = False) -> dict:
        blob = hashlib.sha1(content).hexdigest()
        entry = ({"type": "file", "path": fname, "size": len(content), "oid": blob} if tree
                 else {"rfilename": fname, "size": len(content), "blobId": blob})
        if fname.endswith(".safetensors"):
            entry["lfs"] = {"size": len(content), "pointerSize": 135,
                            ("oid" if tree else "sha256"): hashlib.sha256(content).hexdigest()}
        return entry

    def _model_info(self, h, name: str, repo: Repo, sha: str) -> None:
        self._json(h, {"id": name, "modelId": name, "sha": sha, "private": False,
                       "gated": repo.gated, "disabled": False, "tags": [],
                       "siblings": [self._sibling(f, c) for f, c in repo.files.items()], **repo.info})

    @staticmethod
    def _json(h, doc) -> None:
        body = json.dumps(doc).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def _file(self, h, name: str, repo: Repo, sha: str, fname: str, method: str) -> None:
        if repo.gated:
            auth = h.headers.get("Authorization", "")
            if auth.removeprefix("Bearer ") not in repo.tokens:
                return self._error(h, 401 if not auth else 403, "GatedRepo",
                                   f"Access to model {name} is restricted.", method)
        content = repo.files.get(fname)
        if content is None:
            return self._error(h, 404, "EntryNotFound", "Entry not found", method)
        etag = hashlib.sha256(content).hexdigest()
        start, end = 0, len(content) - 1
        rng = re.fullmatch(r"bytes=(\d+)-(\d*)", h.headers.get("Range", "") or "")
        if rng:
            start = int(rng[1])
            end = min(int(rng[2]) if rng[2] else end, len(content) - 1)
        body = content[start:end + 1]
        h.send_response(206 if rng else 200)
        h.send_header("X-Repo-Commit", sha)
        h.send_header("ETag", f'"{etag}"')
        if fname.endswith(".safetensors"):
            h.send_header("X-Linked-Etag", f'"{etag}"')
            h.send_header("X-Linked-Size", str(len(content)))
        if rng:
            h.send_header("Content-Range", f"bytes {start}-{end}/{len(content)}")
        h.send_header("Content-Length", str(len(body) if method == "GET" else len(content)))
        h.end_headers()
        if method == "GET":
            h.wfile.write(body)
