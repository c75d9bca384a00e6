"""A loopback, in-memory stand-in for the Hugging Face Hub HTTP API, for offline tests.

It implements just enough of the Hub API for the *real* ``huggingface_hub`` client (checked against
huggingface_hub 2.4) to create repos, push commits (``upload_folder``, ``create_commit``,
``PeftModel.push_to_hub``, ``ModelCard.push_to_hub``) and download them again (``hf_hub_download``,
``snapshot_download``, ``file_exists``, ``PeftModel.from_pretrained(base, repo_id, revision=...)``),
at a branch name or at a 40-hex commit sha.

Endpoints (``{type}`` is ``models``, ``datasets`` or ``spaces``; a repo id is ``namespace/name``)::

    GET  /api/whoami-v2
    POST /api/repos/create                          409 if it exists (the client's exist_ok handles it)
    POST /api/validate-yaml                         always valid
    GET  /api/{type}/{repo}[/revision/{rev}]        repo info (id, sha, siblings)
    GET  /api/{type}/{repo}/refs                    branches
    GET  /api/{type}/{repo}/tree/{rev}[/{path}]     ?recursive=  (file entries with git blob oid, size)
    POST /api/{type}/{repo}/paths-info/{rev}        form or JSON ``paths``
    POST /api/{type}/{repo}/preupload/{rev}         every file "regular" (no LFS / Xet), oid of the current blob
    POST /api/{type}/{repo}/commit/{rev}            ndjson: header, file (base64), deletedFile, deletedFolder
    POST /api/{type}/{repo}/branch/{branch}         optional {"startingPoint": rev}; 409 if it exists
    HEAD/GET /[{type}/]{repo}/resolve/{rev}/{path}  ETag, X-Repo-Commit, Content-Length, Range "bytes=a-[b]"

Errors carry ``X-Error-Code`` (``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``) so the client
raises ``RepositoryNotFoundError`` / ``RevisionNotFoundError`` / ``RemoteEntryNotFoundError``. Anything
else is a bare 404 and is recorded in ``LoopbackHub.unhandled``. LFS uploads and pull requests are not
supported (answered 400). Every request is recorded in ``LoopbackHub.requests`` as ``(method, path)``.

Each commit gets a git-like sha1 (of parent, message and the file tree); branch ``main`` (created with an
empty initial commit by ``create_repo``) moves forward, older shas stay readable.

Configuring the client
----------------------
``huggingface_hub`` reads ``HF_ENDPOINT``, ``HF_HUB_CACHE``, ``HF_HOME``, ``HF_HUB_OFFLINE`` once, at
import time, into ``huggingface_hub.constants``; the module-level ``huggingface_hub.hf_api.api`` (behind
``huggingface_hub.create_repo``, ``upload_folder``, ``file_exists``...) and transformers'
``transformers.utils.hub._hf_api`` (behind ``push_to_hub``) copy the endpoint when they are created. So
setting the env var inside an already-running test is NOT enough. Two robust ways:

* in-process (fast; used by tests/test_hub_server.py)::

      with LoopbackHub() as hub, hub.configure_client(tmp_path):
          ...  # real huggingface_hub / transformers / peft calls go to the loopback hub

  ``configure_client`` sets the env vars and patches the constants and the cached API objects listed
  above, with a private cache under ``tmp_path``, and restores everything on exit. The ``hub_client``
  helper below wraps this as a generator for a pytest fixture.

* subprocess (nothing to patch)::

      subprocess.run([...], env=hub.env(tmp_path))

  ``env()`` is a copy of ``os.environ`` with ``HF_ENDPOINT``, ``HF_TOKEN``, ``HF_HOME``,
  ``HF_HUB_CACHE``, telemetry off, and ``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` removed.

The server binds 127.0.0.1 on a free port, serves from a daemon thread, and is shut down by ``stop()``
(called by ``__exit__``); being a daemon it can never keep the interpreter alive.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["LoopbackHub", "hub_client", "git_blob_oid"]

_SHA_RE = re.compile(r"^[0-9a-f]{40}$")
_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
_URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_ACTIONS = {"revision", "refs", "tree", "paths-info", "preupload", "commit", "branch"}


def git_blob_oid(data: bytes) -> str:
    """The git blob sha1 of ``data`` (what the Hub reports as a regular file's oid / ETag)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(ts))


@dataclass
class _Commit:
    sha: str
    parent: str | None
    message: str
    files: dict[str, bytes]
    date: float


@dataclass
class _Repo:
    repo_id: str
    repo_type: str
    private: bool
    created: float
    commits: dict[str, _Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)

    def resolve(self, rev: str) -> _Commit | None:
        rev = rev[len("refs/heads/") :] if rev.startswith("refs/heads/") else rev
        if rev in self.branches:
            return self.commits[self.branches[rev]]
        if _SHA_RE.match(rev) and rev in self.commits:
            return self.commits[rev]
        return None


class _HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


class LoopbackHub:
    """In-memory Hub API on 127.0.0.1:<free port>. Use as a context manager or call ``stop()``."""

    def __init__(self, token: str = "hf_loopback_token", user: str = "user"):
        self.token = token
        self.user = user
        self.repos: dict[tuple[str, str], _Repo] = {}
        self.requests: list[tuple[str, str]] = []
        self.unhandled: list[tuple[str, str]] = []
        self._lock = threading.RLock()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):
                hub._dispatch(self, "GET")

            def do_HEAD(self):
                hub._dispatch(self, "HEAD")

            def do_POST(self):
                hub._dispatch(self, "POST")

            def do_PUT(self):
                hub._dispatch(self, "PUT")

            def do_DELETE(self):
                hub._dispatch(self, "DELETE")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="loopback-hub", daemon=True
        )
        self._thread.start()

    # ------------------------------------------------------------------ lifecycle
    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None

    def __enter__(self) -> LoopbackHub:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ client configuration
    def env(self, cache_dir: str | os.PathLike | None = None, base: dict | None = None) -> dict[str, str]:
        """A full environment for a subprocess that should talk to this hub (see module docstring)."""
        env = dict(os.environ if base is None else base)
        for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "HUGGINGFACE_HUB_CACHE"):
            env.pop(key, None)
        env.update(
            HF_ENDPOINT=self.endpoint,
            HF_TOKEN=self.token,
            HF_HUB_DISABLE_TELEMETRY="1",
            HF_HUB_DISABLE_IMPLICIT_TOKEN="0",
        )
        if cache_dir is not None:
            home = Path(cache_dir) / "hf_home"
            env.update(HF_HOME=str(home), HF_HUB_CACHE=str(home / "hub"), HF_ASSETS_CACHE=str(home / "assets"))
        return env

    @contextlib.contextmanager
    def configure_client(self, cache_dir: str | os.PathLike):
        """Point the already-imported huggingface_hub (and transformers, if used) at this hub, in-process.

        Patches env vars, ``huggingface_hub.constants`` and the API objects that cached the endpoint;
        uses ``<cache_dir>/hf_home`` as HF_HOME / HF_HUB_CACHE. Everything is restored on exit.
        """
        from huggingface_hub import constants, hf_api

        home = Path(cache_dir) / "hf_home"
        hub_cache = home / "hub"
        hub_cache.mkdir(parents=True, exist_ok=True)
        new_env = self.env(cache_dir, base={})
        env_keys = set(new_env) | {"HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"}
        env_keys |= {"HUGGINGFACE_HUB_CACHE"}
        saved_env = {k: os.environ.get(k) for k in env_keys}

        const_values = {
            "ENDPOINT": self.endpoint,
            "HUGGINGFACE_CO_URL_TEMPLATE": self.endpoint + "/{repo_id}/resolve/{revision}/{filename}",
            "HF_HOME": str(home),
            "HF_HUB_CACHE": str(hub_cache),
            "HUGGINGFACE_HUB_CACHE": str(hub_cache),
            "HF_ASSETS_CACHE": str(home / "assets"),
            "HUGGINGFACE_ASSETS_CACHE": str(home / "assets"),
            "HF_TOKEN_PATH": str(home / "token"),
            "HF_STORED_TOKENS_PATH": str(home / "stored_tokens"),
            "HF_HUB_OFFLINE": False,
            "HF_HUB_DISABLE_TELEMETRY": True,
        }
        saved_const = {k: getattr(constants, k) for k in const_values if hasattr(constants, k)}
        saved_api_endpoint = hf_api.api.endpoint
        from huggingface_hub import repocard

        saved_card_session = repocard.get_session
        endpoint = self.endpoint

        class _LoopbackSession:  # huggingface_hub 1.x validates cards at a hard-coded huggingface.co URL
            def __init__(self, session):
                self._session = session

            def post(self, url, *args, **kwargs):
                return self._session.post(url.replace("https://huggingface.co", endpoint), *args, **kwargs)

            def __getattr__(self, name):
                return getattr(self._session, name)

        tf_hub = sys.modules.get("transformers.utils.hub")
        saved_tf_api = getattr(tf_hub, "_hf_api", None) if tf_hub is not None else None

        try:
            for k in env_keys:
                os.environ.pop(k, None)
            os.environ.update(new_env)
            for k, v in const_values.items():
                if k in saved_const:
                    setattr(constants, k, v)
            hf_api.api.endpoint = self.endpoint
            repocard.get_session = lambda: _LoopbackSession(saved_card_session())
            if tf_hub is not None:
                tf_hub._hf_api = None  # recreated lazily with the patched constants.ENDPOINT
            yield self
        finally:
            for k, v in saved_env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            for k, v in saved_const.items():
                setattr(constants, k, v)
            hf_api.api.endpoint = saved_api_endpoint
            repocard.get_session = saved_card_session
            tf_hub = sys.modules.get("transformers.utils.hub")
            if tf_hub is not None:
                # transformers may have been imported (and its API object built) inside the block.
                tf_hub._hf_api = saved_tf_api

    # ------------------------------------------------------------------ direct access for tests
    def head(self, repo_id: str, branch: str = "main", repo_type: str = "model") -> str:
        with self._lock:
            return self.repos[(repo_type, repo_id)].branches[branch]

    def files(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> dict[str, bytes]:
        with self._lock:
            commit = self.repos[(repo_type, repo_id)].resolve(revision)
            return dict(commit.files) if commit else {}

    # ------------------------------------------------------------------ HTTP plumbing
    def _dispatch(self, h: BaseHTTPRequestHandler, method: str) -> None:
        url = urlsplit(h.path)
        raw_segments = [s for s in url.path.split("/") if s]
        segments = [unquote(s) for s in raw_segments]
        query = parse_qs(url.query)
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        with self._lock:
            self.requests.append((method, url.path))
        try:
            if segments[:1] == ["api"]:
                status, headers, payload = self._api(method, segments[1:], query, body, h.headers)
            elif "resolve" in segments and method in ("GET", "HEAD"):
                status, headers, payload = self._resolve(method, segments, h.headers)
            else:
                with self._lock:
                    self.unhandled.append((method, url.path))
                raise _HubError(404, f"not implemented by LoopbackHub: {method} {url.path}")
        except _HubError as e:
            status, payload = e.status, json.dumps({"error": e.message}).encode()
            headers = {"Content-Type": "application/json", "X-Error-Message": e.message}
            if e.code:
                headers["X-Error-Code"] = e.code
        if isinstance(payload, (dict, list)):
            payload = json.dumps(payload).encode()
            headers.setdefault("Content-Type", "application/json")
        h.send_response(status)
        headers.setdefault("Content-Length", str(len(payload)))
        for k, v in headers.items():
            h.send_header(k, v)
        h.end_headers()
        if method != "HEAD":
            h.wfile.write(payload)

    def _repo(self, repo_type: str, repo_id: str) -> _Repo:
        repo = self.repos.get((repo_type, repo_id))
        if repo is None:
            raise _HubError(404, f"Repository {repo_id} not found", "RepoNotFound")
        return repo

    def _commit_at(self, repo: _Repo, rev: str) -> _Commit:
        commit = repo.resolve(rev)
        if commit is None:
            raise _HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        return commit

    def _split_repo(self, segments: list[str]) -> tuple[str, list[str]]:
        """``[ns, name, action, ...]`` or ``[name, action, ...]`` -> (repo_id, rest)."""
        if len(segments) >= 2 and (len(segments) == 2 or segments[2] in _ACTIONS or segments[2] == "resolve"):
            return "/".join(segments[:2]), segments[2:]
        if len(segments) >= 1 and (len(segments) == 1 or segments[1] in _ACTIONS or segments[1] == "resolve"):
            return segments[0], segments[1:]
        raise _HubError(404, "cannot parse repo id")

    # ------------------------------------------------------------------ /api/...
    def _api(self, method, seg, query, body, req_headers):
        if method == "GET" and seg == ["whoami-v2"]:
            return 200, {}, {"type": "user", "name": self.user, "fullname": self.user, "orgs": [],
                             "auth": {"type": "access_token", "accessToken": {"role": "write"}}}
        if method == "POST" and seg == ["repos", "create"]:
            return self._create_repo(json.loads(body or b"{}"))
        if method == "POST" and seg == ["validate-yaml"]:
            return 200, {}, {"errors": [], "warnings": []}
        if seg and seg[0] in _TYPES:
            repo_type = _TYPES[seg[0]]
            repo_id, rest = self._split_repo(seg[1:])
            with self._lock:
                return self._repo_api(method, repo_type, repo_id, rest, query, body, req_headers)
        with self._lock:
            self.unhandled.append((method, "/api/" + "/".join(seg)))
        raise _HubError(404, f"not implemented by LoopbackHub: {method} /api/{'/'.join(seg)}")

    def _create_repo(self, payload: dict):
        name, org = payload["name"], payload.get("organization") or self.user
        repo_type = payload.get("type") or "model"
        repo_id = f"{org}/{name}"
        url = f"{self.endpoint}/{_URL_PREFIX[repo_type]}{repo_id}"
        with self._lock:
            if (repo_type, repo_id) in self.repos:
                return 409, {}, {"error": "You already created this model repo", "url": url}
            now = time.time()
            repo = _Repo(repo_id, repo_type, payload.get("visibility") == "private" or bool(payload.get("private")), now)
            self._new_commit(repo, None, "initial commit", {}, "main")
            self.repos[(repo_type, repo_id)] = repo
        return 200, {}, {"url": url, "name": repo_id, "id": repo_id}

    def _new_commit(self, repo: _Repo, parent: str | None, message: str, files: dict[str, bytes], branch: str):
        tree = "".join(f"{p}\0{git_blob_oid(d)}\n" for p, d in sorted(files.items()))
        sha = hashlib.sha1(f"parent {parent}\nmessage {message}\n{tree}".encode()).hexdigest()
        if sha in repo.commits:  # identical re-commit: keep shas unique anyway
            sha = hashlib.sha1(f"{sha}{time.time_ns()}".encode()).hexdigest()
        repo.commits[sha] = _Commit(sha, parent, message, dict(files), time.time())
        repo.branches[branch] = sha
        return sha

    def _entry(self, path: str, data: bytes) -> dict:
        return {"type": "file", "oid": git_blob_oid(data), "size": len(data), "path": path}

    def _folder(self, path: str, files: dict[str, bytes]) -> dict:
        inner = "".join(f"{p}\0{git_blob_oid(d)}\n" for p, d in sorted(files.items()) if p.startswith(path + "/"))
        return {"type": "directory", "oid": hashlib.sha1(inner.encode()).hexdigest(), "size": 0, "path": path}

    def _repo_api(self, method, repo_type, repo_id, rest, query, body, req_headers):
        repo = self._repo(repo_type, repo_id)
        action = rest[0] if rest else None

        if method == "GET" and action in (None, "revision"):
            commit = self._commit_at(repo, rest[1] if action == "revision" and len(rest) > 1 else "main")
            return 200, {}, {
                "_id": hashlib.sha1(repo_id.encode()).hexdigest()[:24],
                "id": repo_id,
                "modelId": repo_id,
                "author": repo_id.split("/")[0],
                "sha": commit.sha,
                "private": repo.private,
                "gated": False,
                "disabled": False,
                "downloads": 0,
                "likes": 0,
                "tags": [],
                "createdAt": _iso(repo.created),
                "lastModified": _iso(commit.date),
                "siblings": [{"rfilename": p} for p in sorted(commit.files)],
            }

        if method == "GET" and action == "refs":
            branches = [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": s} for b, s in sorted(repo.branches.items())]
            return 200, {}, {"branches": branches, "tags": [], "converts": []}

        if method == "GET" and action == "tree":
            if len(rest) < 2:
                raise _HubError(404, "missing revision")
            commit = self._commit_at(repo, rest[1])
            prefix = "/".join(rest[2:]).strip("/")
            recursive = (query.get("recursive", ["false"])[0]).lower() in ("1", "true")
            under = {p: d for p, d in commit.files.items() if not prefix or p.startswith(prefix + "/")}
            if prefix and not under:
                raise _HubError(404, f"{prefix} does not exist on {rest[1]}", "EntryNotFound")
            entries, folders = [], set()
            for path in sorted(under):
                rel = path[len(prefix) + 1 :] if prefix else path
                parts = rel.split("/")
                for i in range(1, len(parts) if recursive else min(2, len(parts))):
                    folders.add("/".join(([prefix] if prefix else []) + parts[:i]))
                if recursive or len(parts) == 1:
                    entries.append(self._entry(path, under[path]))
            entries += [self._folder(f, commit.files) for f in sorted(folders)]
            return 200, {}, entries

        if method == "POST" and action == "paths-info":
            commit = self._commit_at(repo, rest[1] if len(rest) > 1 else "main")
            if req_headers.get("Content-Type", "").startswith("application/json"):
                paths = json.loads(body or b"{}").get("paths", [])
            else:
                paths = parse_qs(body.decode()).get("paths", [])
            out = []
            for p in [p.strip("/") for p in paths]:
                if p in commit.files:
                    out.append(self._entry(p, commit.files[p]))
                elif any(f.startswith(p + "/") for f in commit.files):
                    out.append(self._folder(p, commit.files))
            return 200, {}, out

        if method == "POST" and action == "preupload":
            if query.get("create_pr"):
                raise _HubError(400, "LoopbackHub does not support pull requests")
            commit = repo.resolve(rest[1] if len(rest) > 1 else "main")
            current = commit.files if commit else {}
            files = json.loads(body or b"{}").get("files", [])
            return 200, {}, {
                "files": [
                    {
                        "path": f["path"],
                        "uploadMode": "regular",
                        "shouldIgnore": False,
                        "oid": git_blob_oid(current[f["path"]]) if f["path"] in current else None,
                    }
                    for f in files
                ],
                "commitOid": commit.sha if commit else None,
            }

        if method == "POST" and action == "commit":
            return self._commit(repo, rest[1] if len(rest) > 1 else "main", query, body)

        if method == "POST" and action == "branch":
            if len(rest) < 2:
                raise _HubError(400, "missing branch name")
            branch = rest[1]
            if branch in repo.branches:
                raise _HubError(409, f"Branch {branch} already exists")
            start = json.loads(body or b"{}").get("startingPoint") or "main"
            repo.branches[branch] = self._commit_at(repo, start).sha
            return 200, {}, {}

        with self._lock:
            self.unhandled.append((method, f"/api/{repo_type}s/{repo_id}/{'/'.join(rest)}"))
        raise _HubError(404, f"not implemented by LoopbackHub: {method} {repo_id} {rest}")

    def _commit(self, repo: _Repo, rev: str, query, body: bytes):
        if query.get("create_pr"):
            raise _HubError(400, "LoopbackHub does not support pull requests")
        if _SHA_RE.match(rev) or rev not in repo.branches:
            # The Hub commits onto branches only (create the branch first).
            raise _HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        head = repo.commits[repo.branches[rev]]
        files = dict(head.files)
        header: dict = {}
        for line in body.splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                header = value
                parent = value.get("parentCommit")
                if parent is not None and parent != head.sha:
                    raise _HubError(412, f"parentCommit {parent} is not the head of {rev} ({head.sha})")
            elif key == "file":
                if value.get("encoding", "base64") != "base64":
                    raise _HubError(400, f"unsupported encoding {value.get('encoding')}")
                files[value["path"]] = base64.b64decode(value["content"])
            elif key == "deletedFile":
                if value["path"] not in files:
                    raise _HubError(404, f"{value['path']} does not exist", "EntryNotFound")
                del files[value["path"]]
            elif key == "deletedFolder":
                folder = value["path"].rstrip("/") + "/"
                for p in [p for p in files if p.startswith(folder)]:
                    del files[p]
            else:  # lfsFile & co: never requested, preupload answers "regular" for everything
                raise _HubError(400, f"LoopbackHub does not support commit operation {key!r}")
        message = header.get("summary", "")
        if header.get("description"):
            message += "\n\n" + header["description"]
        sha = self._new_commit(repo, head.sha, message, files, rev)
        url = f"{self.endpoint}/{_URL_PREFIX[repo.repo_type]}{repo.repo_id}/commit/{sha}"
        return 200, {}, {"success": True, "commitUrl": url, "commitOid": sha, "pullRequestUrl": None}

    # ------------------------------------------------------------------ /{repo}/resolve/{rev}/{path}
    def _resolve(self, method, segments, req_headers):
        repo_type = "model"
        if segments[0] in _TYPES and segments.index("resolve") > 1:
            repo_type = _TYPES[segments[0]]
            segments = segments[1:]
        i = segments.index("resolve")
        repo_id, rest = "/".join(segments[:i]), segments[i + 1 :]
        if len(rest) < 2:
            raise _HubError(404, "missing revision or path")
        rev, path = rest[0], "/".join(rest[1:])
        with self._lock:
            repo = self._repo(repo_type, repo_id)
            commit = self._commit_at(repo, rev)
            if path not in commit.files:
                raise _HubError(404, f"Entry not found: {path}", "EntryNotFound")
            data = commit.files[path]
        headers = {
            "ETag": f'"{git_blob_oid(data)}"',
            "X-Repo-Commit": commit.sha,
            "Content-Type": "application/octet-stream",
            "Accept-Ranges": "bytes",
        }
        status = 200
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", req_headers.get("Range", "") or "")
        if m and method == "GET":
            start = int(m.group(1))
            end = int(m.group(2)) if m.group(2) else len(data) - 1
            if start >= len(data) and len(data) > 0:
                raise _HubError(416, "range not satisfiable")
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            data, status = data[start : end + 1], 206
        headers["Content-Length"] = str(len(data))
        return status, headers, data


def hub_client(tmp_path):
    """Generator for a pytest fixture: a running hub with the in-process client pointed at it.

    Example::

        @pytest.fixture
        def hub(tmp_path):
            yield from hub_client(tmp_path)
    """
    with LoopbackHub() as hub, hub.configure_client(tmp_path):
        yield hub
