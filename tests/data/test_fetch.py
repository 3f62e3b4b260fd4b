"""Fetch, offline: a local HTTP server on 127.0.0.1 serves small archives, good and bad."""

from __future__ import annotations

import hashlib
import io
import json
import random
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from lra.data import fetch
from lra.data.errors import DataError


class Server:
    """Serves ``files`` (name -> bytes); honours ``Range`` unless told not to; can drop a connection."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.ranges = True
        self.drop_after: int | None = None  # first response: send this many bytes, then close
        self.requests: list[str | None] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                body = server.files.get(self.path.lstrip("/"))
                requested = self.headers.get("Range")
                server.requests.append(requested)
                if body is None:
                    self.send_error(404)
                    return
                start = int(requested[6:].split("-")[0]) if requested and server.ranges else 0
                if start >= len(body) and start:
                    self.send_error(416)
                    return
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                payload = body[start:]
                if server.drop_after is not None:
                    payload, server.drop_after = payload[: server.drop_after], None
                self.wfile.write(payload)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[Server]:
    running = Server()
    yield running
    running.close()


def tar_bytes(members: dict[str, bytes], links: dict[str, tuple[str, bytes]] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, (target, kind) in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, target
            tar.addfile(info)
    return buffer.getvalue()


NOISE = random.Random(0).randbytes(5000)  # incompressible, so the archive is larger than a dropped prefix
GOOD = tar_bytes({"toy/a.txt": NOISE, "toy/sub/b.txt": b"beta"})


def archive_for(
    server: Server, name: str, data: bytes, *, size: int | None = -1, sha256: str | None = ""
) -> fetch.Archive:
    server.files[name] = data
    return fetch.Archive(
        name="toy",
        url=server.url(name),
        filename=name,
        size=len(data) if size == -1 else size,
        sha256=hashlib.sha256(data).hexdigest() if sha256 == "" else sha256,
        provenance="test fixture",
        contents="toy/",
    )


def test_good_archive_is_downloaded_verified_and_unpacked(tmp_path: Path, server: Server):
    archive = archive_for(server, "good.tar.gz", GOOD)
    unpacked = fetch.fetch("toy", tmp_path, archive=archive, progress=False, retry_wait=0)
    assert unpacked == [tmp_path / "raw" / "toy"]
    assert (tmp_path / "raw" / "toy" / "sub" / "b.txt").read_bytes() == b"beta"
    assert (tmp_path / "downloads" / "good.tar.gz").read_bytes() == GOOD
    assert not list((tmp_path / "downloads").glob("*.part"))
    assert (
        fetch.fetch("toy", tmp_path, archive=archive, progress=False, retry_wait=0) == unpacked
    )  # done: no new request
    assert len(server.requests) == 1


def test_dropped_connection_is_resumed_with_a_range_request(tmp_path: Path, server: Server):
    archive = archive_for(server, "good.tar.gz", GOOD)
    server.drop_after = 1000
    fetch.fetch("toy", tmp_path, archive=archive, progress=False, retry_wait=0)
    assert server.requests == [None, "bytes=1000-"]
    assert (tmp_path / "downloads" / "good.tar.gz").read_bytes() == GOOD


def test_partial_file_from_an_earlier_run_is_resumed(tmp_path: Path, server: Server):
    archive = archive_for(server, "good.tar.gz", GOOD)
    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads" / "good.tar.gz.part").write_bytes(GOOD[:700])
    fetch.download(archive, tmp_path / "downloads", progress=False, retry_wait=0)
    assert server.requests == ["bytes=700-"]
    assert (tmp_path / "downloads" / "good.tar.gz").read_bytes() == GOOD


def test_server_that_ignores_range_makes_it_start_over(tmp_path: Path, server: Server):
    archive = archive_for(server, "good.tar.gz", GOOD)
    server.ranges = False
    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads" / "good.tar.gz.part").write_bytes(b"garbage")
    fetch.download(archive, tmp_path / "downloads", progress=False, retry_wait=0)
    assert (tmp_path / "downloads" / "good.tar.gz").read_bytes() == GOOD


def test_truncated_download_is_refused_and_removed(tmp_path: Path, server: Server):
    archive = archive_for(
        server, "short.tar.gz", GOOD[:-100], size=len(GOOD), sha256=hashlib.sha256(GOOD).hexdigest()
    )
    with pytest.raises(DataError, match=f"has {len(GOOD) - 100} bytes, sha256 .*; expected {len(GOOD)} bytes"):
        fetch.fetch("toy", tmp_path, archive=archive, progress=False, retry_wait=0)
    assert not list((tmp_path / "downloads").iterdir()) and not (tmp_path / "raw").exists()


def test_an_archive_put_there_by_hand_is_hashed_and_moved_aside_when_wrong(tmp_path: Path, server: Server):
    archive = archive_for(server, "good.tar.gz", GOOD)
    placed = tmp_path / "downloads" / "good.tar.gz"
    placed.parent.mkdir()
    placed.write_bytes(GOOD[:-1] + bytes([GOOD[-1] ^ 1]))  # the right size, one bit off
    wrong = hashlib.sha256(placed.read_bytes()).hexdigest()
    with pytest.raises(DataError, match=f"sha256 {wrong}; expected {len(GOOD)} bytes, sha256 {archive.sha256}"):
        fetch.fetch("toy", tmp_path, archive=archive, progress=False, retry_wait=0)
    assert not placed.exists() and (tmp_path / "downloads" / "good.tar.gz.rejected").is_file()
    assert not (tmp_path / "raw").exists() and server.requests == []


def test_an_archive_put_there_by_hand_is_recorded_with_its_own_digest(tmp_path: Path, server: Server):
    for verified, sha256 in ((True, ""), (False, None)):
        archive = archive_for(server, "good.tar.gz", GOOD, sha256=sha256)
        data_dir = tmp_path / str(verified)
        (data_dir / "downloads").mkdir(parents=True)
        (data_dir / "downloads" / "good.tar.gz").write_bytes(GOOD)
        fetch.fetch("toy", data_dir, archive=archive, progress=False, retry_wait=0)
        marker = json.loads((data_dir / "raw" / ".fetched-toy.json").read_text())
        assert marker["sha256"] == hashlib.sha256(GOOD).hexdigest() and marker["verified"] is verified
    assert server.requests == []


def test_bad_digest_is_refused_and_removed(tmp_path: Path, server: Server):
    archive = archive_for(server, "bad.tar.gz", GOOD, sha256="0" * 64)
    with pytest.raises(DataError, match="; expected [0-9]+ bytes, sha256 0000"):
        fetch.fetch("toy", tmp_path, archive=archive, progress=False, retry_wait=0)
    assert not list((tmp_path / "downloads").iterdir()) and not (tmp_path / "raw").exists()


def test_unknown_digest_is_computed_and_printed(tmp_path: Path, server: Server, capsys):
    archive = archive_for(server, "good.tar.gz", GOOD, size=None, sha256=None)
    fetch.fetch("toy", tmp_path, archive=archive, progress=False, retry_wait=0)
    assert hashlib.sha256(GOOD).hexdigest() in capsys.readouterr().err
    assert '"verified": false' in (tmp_path / "raw" / ".fetched-toy.json").read_text()


@pytest.mark.parametrize(
    ("members", "links", "reason"),
    [
        ({"toy/ok.txt": b"x", "toy/../../evil.txt": b"x"}, None, "'..' in path"),
        ({"/tmp/evil.txt": b"x"}, None, "absolute path"),
        ({"toy/ok.txt": b"x"}, {"toy/link": ("../../etc/passwd", tarfile.SYMTYPE)}, "symlink"),
        ({"toy/ok.txt": b"x"}, {"toy/link": ("/etc/passwd", tarfile.SYMTYPE)}, "symlink"),
        ({"toy/ok.txt": b"x"}, {"toy/hard": ("../outside", tarfile.LNKTYPE)}, "hard link"),
    ],
)
def test_path_traversal_is_refused_before_anything_is_written(
    tmp_path: Path, server: Server, members, links, reason
):
    archive = archive_for(server, "evil.tar.gz", tar_bytes(members, links))
    with pytest.raises(DataError, match=f"refusing to unpack .*{reason}.*nothing was extracted"):
        fetch.fetch("toy", tmp_path / "data", archive=archive, progress=False, retry_wait=0)
    assert not (tmp_path / "data" / "raw" / "toy").exists() and not (tmp_path / "evil.txt").exists()


def test_links_inside_the_target_are_allowed(tmp_path: Path, server: Server):
    archive = archive_for(
        server, "links.tar.gz", tar_bytes({"toy/a.txt": b"alpha"}, {"toy/link": ("a.txt", tarfile.SYMTYPE)})
    )
    fetch.fetch("toy", tmp_path, archive=archive, progress=False, retry_wait=0)
    assert (tmp_path / "raw" / "toy" / "link").read_bytes() == b"alpha"


def test_existing_folder_is_not_silently_replaced(tmp_path: Path, server: Server):
    (tmp_path / "raw" / "toy").mkdir(parents=True)
    archive = archive_for(server, "good.tar.gz", GOOD)
    with pytest.raises(DataError, match="already exist"):
        fetch.fetch("toy", tmp_path, archive=archive, progress=False, retry_wait=0)
    fetch.fetch("toy", tmp_path, archive=archive, progress=False, force=True)
    assert (tmp_path / "raw" / "toy" / "a.txt").is_file()


def test_names_resolve_by_archive_or_task():
    assert fetch.resolve("text").name == "imdb" and fetch.resolve("retrieval").name == "lra_release"
    assert fetch.resolve("cifar10").sha256.startswith("6d958be0")
    with pytest.raises(DataError, match="archives: lra_release, imdb, cifar10"):
        fetch.resolve("mnist")


def test_missing_file_on_the_server_is_a_clear_error(tmp_path: Path, server: Server):
    archive = fetch.Archive(
        name="toy",
        url=server.url("nope.tar.gz"),
        filename="nope.tar.gz",
        size=None,
        sha256=None,
        provenance="",
        contents="",
    )
    with pytest.raises(DataError, match="HTTP 404"):
        fetch.download(archive, tmp_path, progress=False, retry_wait=0)
