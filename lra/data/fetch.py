"""Downloading the official archives: resumable, checked, safely unpacked into ``<data_dir>/raw``.

Every URL, size and digest lives in ``ARCHIVES``, with where each number came from. An archive is
downloaded to ``<data_dir>/downloads/<file>.part`` (resumed with an HTTP ``Range`` request after a
dropped connection or a restart; a server that ignores ``Range`` makes it start over), checked against
its known size and sha256, renamed to ``<file>``, and unpacked into a staging folder under
``<data_dir>/raw`` whose entries are then renamed into place. Unpacking refuses, before writing
anything, any member with an absolute path, a ``..`` component, a link that leaves the target, or a
device/FIFO; Python's ``tarfile`` ``data`` filter is applied on top. Where no digest is known, the
computed one is printed so it can be compared with a trusted source. An archive found in ``downloads/``
(an earlier fetch, or a copy put there by hand) is hashed like a download; one that does not match is
moved aside to ``<file>.rejected``. The marker ``raw/.fetched-<name>.json`` records the digest computed
from the file, and ``verified: true`` only where it equals the published one.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import posixpath
import shutil
import sys
import tarfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from lra.data.errors import DataError


@dataclass(frozen=True)
class Archive:
    name: str
    url: str
    filename: str
    size: int | None  # bytes; None where no trustworthy figure is known
    sha256: str | None  # None where no trustworthy digest is known: the computed one is printed
    provenance: str  # where size and digest come from
    contents: str  # what lands in <data_dir>/raw


# One entry per archive, alike in shape by design: data, not logic to share.
ARCHIVES = {
    "lra_release": Archive(
        name="lra_release",
        url="https://storage.googleapis.com/long-range-arena/lra_release.gz",
        filename="lra_release.tar.gz",
        size=None,
        sha256=None,
        provenance="URL from google-research/long-range-arena README; no size or digest is "
        "published (community notes say about 7.7 GB): unverified, the computed sha256 is printed",
        contents="lra_release/: listops-1000/, tsv_data/ (AAN), pathfinder32..256/, ...",
    ),
    "imdb": Archive(
        name="imdb",
        url="http://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz",
        filename="aclImdb_v1.tar.gz",
        size=84_125_825,
        sha256="c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe",
        provenance="URL, size and sha256 from tensorflow/datasets url_checksums/imdb_reviews.txt",
        contents="aclImdb/: {train,test}/{pos,neg}/*.txt (and train/unsup/)",
    ),
    "cifar10": Archive(
        name="cifar10",
        url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        filename="cifar-10-python.tar.gz",
        size=170_498_071,
        sha256="6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
        provenance="sha256 from keras-team/keras keras/src/datasets/cifar10.py (file_hash); size as reported "
        "beside that digest in public provenance notes",
        contents="cifar-10-batches-py/: data_batch_1..5, test_batch, batches.meta",
    ),
}
TASK_ARCHIVES = {
    "listops": "lra_release",
    "retrieval": "lra_release",
    "pathfinder": "lra_release",
    "text": "imdb",
    "image": "cifar10",
}
_RETRIES = 5
_TIMEOUT = 60


def resolve(name: str) -> Archive:
    """An archive by its own name or by the task that needs it."""
    key = TASK_ARCHIVES.get(name, name)
    if key not in ARCHIVES:
        raise DataError(
            f"nothing to fetch called {name!r}; archives: {', '.join(ARCHIVES)}; "
            f"tasks: {', '.join(TASK_ARCHIVES)}"
        )
    return ARCHIVES[key]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _request(url: str, offset: int) -> urllib.request.Request:
    headers = {"User-Agent": "lra-harness/0.1 (python urllib)"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.Request(url, headers=headers)


def _download_once(archive: Archive, part: Path, progress: bool) -> None:
    """One request: resume from ``part``'s size where the server allows it, else start over."""
    offset = part.stat().st_size if part.exists() else 0
    try:
        response = urllib.request.urlopen(_request(archive.url, offset), timeout=_TIMEOUT)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:  # nothing past what we have: the download is complete
            return
        raise
    with response:
        resumed = offset and response.status == 206
        if offset and not resumed:
            offset = 0  # the server sent the whole file
        remaining = int(response.headers.get("Content-Length") or 0)
        total = offset + remaining if remaining else archive.size
        with (
            open(part, "ab" if resumed else "wb") as f,
            tqdm(
                total=total,
                initial=offset,
                unit="B",
                unit_scale=True,
                desc=archive.filename,
                disable=not progress,
                file=sys.stderr,
            ) as bar,
        ):
            received = 0
            while block := response.read(1 << 20):
                f.write(block)
                received += len(block)
                bar.update(len(block))
    if remaining and received < remaining:  # http.client returns b"" when the server hangs up early
        raise ConnectionError(f"connection closed after {offset + received} of {offset + remaining} bytes")


def download(archive: Archive, downloads: Path, *, progress: bool = True, retry_wait: float = 2.0) -> Path:
    """The verified archive file in ``downloads``, downloading or resuming it as needed."""
    return _download(archive, downloads, progress=progress, retry_wait=retry_wait)[0]


def _download(archive: Archive, downloads: Path, *, progress: bool, retry_wait: float) -> tuple[Path, str]:
    """``download``, with the file's sha256 (computed once)."""
    downloads.mkdir(parents=True, exist_ok=True)
    final = downloads / archive.filename
    if final.is_file():  # put there by an earlier fetch, or by hand: hashed all the same
        return final, verify(archive, final, rejected="moved")
    part = final.with_name(final.name + ".part")
    for attempt in range(1, _RETRIES + 1):
        try:
            _download_once(archive, part, progress)
            break
        except (http.client.IncompleteRead, urllib.error.URLError, ConnectionError, TimeoutError) as error:
            if isinstance(error, urllib.error.HTTPError) and error.code < 500:
                raise DataError(f"{archive.url}: HTTP {error.code} {error.reason}") from None
            if attempt == _RETRIES:
                raise DataError(
                    f"{archive.url}: download failed after {attempt} attempts ({error}); "
                    f"run the same command again to resume from {part}"
                ) from None
            print(
                f"connection lost ({error}); resuming (attempt {attempt + 1} of {_RETRIES})", file=sys.stderr
            )
            time.sleep(min(retry_wait * 2 ** (attempt - 1), 30))
    digest = verify(archive, part, rejected="deleted")
    os.replace(part, final)
    return final, digest


def verify(archive: Archive, path: Path, *, rejected: str = "deleted") -> str:
    """Check size and sha256 against the known values; returns the digest. A file that fails is deleted
    (``rejected="deleted"``: a download of ours) or moved aside to ``<file>.rejected`` (``"moved"``: a file
    that was there before, perhaps put there by hand), and the error names both digests."""
    size = path.stat().st_size
    digest = sha256_of(path)
    if archive.sha256 is None:
        print(
            f"{archive.filename}: {size} bytes, sha256 {digest} (unverified: no published digest; "
            "compare it with a trusted copy)",
            file=sys.stderr,
        )
        return digest
    if digest == archive.sha256 and (archive.size is None or size == archive.size):
        return digest
    if rejected == "moved":
        aside = path.with_name(path.name + ".rejected")
        os.replace(path, aside)
        fate = f"moved it to {aside}"
    else:
        path.unlink()
        fate = f"deleted {path}"
    expected = f"{archive.size} bytes" if archive.size is not None else "size unknown"
    raise DataError(
        f"{archive.url}: {path.name} has {size} bytes, sha256 {digest}; expected {expected}, sha256 "
        f"{archive.sha256} ({archive.provenance}).\n{fate}; run fetch again to download it"
    )


def _unsafe_reason(member: tarfile.TarInfo) -> str | None:
    name = member.name
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "absolute path"
    if ".." in posixpath.normpath(name).split("/") or ".." in name.split("/"):
        return "'..' in path"
    if member.isdev() or member.isfifo():
        return "device or FIFO"
    if member.issym():
        target = member.linkname
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
        if target.startswith("/") or resolved == ".." or resolved.startswith("../"):
            return f"symlink to {target!r} leaves the target folder"
    if member.islnk():
        resolved = posixpath.normpath(member.linkname)
        if member.linkname.startswith("/") or resolved == ".." or resolved.startswith("../"):
            return f"hard link to {member.linkname!r} leaves the target folder"
    return None


def safe_extract(path: Path, target: Path, *, replace: bool = False) -> list[Path]:
    """Unpack a tar archive into ``target`` after checking every member; returns the top-level entries."""
    try:
        with tarfile.open(path) as archive:
            members = archive.getmembers()
            for member in members:
                if reason := _unsafe_reason(member):
                    raise DataError(
                        f"{path}: refusing to unpack {member.name!r} ({reason}); nothing was extracted"
                    )
            target.mkdir(parents=True, exist_ok=True)
            staging = target / f".extract-{path.name}-{os.getpid()}"
            shutil.rmtree(staging, ignore_errors=True)
            try:
                archive.extractall(staging, members=members, filter="data")
                entries = sorted(staging.iterdir())
                destinations = [target / e.name for e in entries]
                clash = [d for d in destinations if d.exists()]
                if clash and not replace:
                    raise DataError(
                        f"{', '.join(map(str, clash))} already exist(s) and did not come from this "
                        "archive's verified unpacking; remove them, or pass force=true to replace them"
                    )
                for entry, destination in zip(entries, destinations, strict=True):
                    if destination.exists():
                        shutil.rmtree(destination) if destination.is_dir() else destination.unlink()
                    os.replace(entry, destination)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    except (tarfile.TarError, EOFError) as error:
        raise DataError(f"{path}: truncated or corrupt archive ({error})") from None
    return destinations


def fetch(
    name: str,
    data_dir: Path,
    *,
    force: bool = False,
    progress: bool = True,
    retry_wait: float = 2.0,
    archive: Archive | None = None,
) -> list[Path]:
    """Download (or resume), verify and unpack one archive; returns where its contents now are."""
    archive = archive or resolve(name)
    raw = data_dir / "raw"
    marker = raw / f".fetched-{archive.name}.json"
    if marker.is_file() and not force:
        record = json.loads(marker.read_text())
        if all(Path(p).exists() for p in record["unpacked"]):
            return [Path(p) for p in record["unpacked"]]
    file, digest = _download(archive, data_dir / "downloads", progress=progress, retry_wait=retry_wait)
    unpacked = safe_extract(file, raw, replace=force or marker.is_file())
    record = {
        "archive": archive.name,
        "url": archive.url,
        "file": str(file),
        "size": file.stat().st_size,
        "sha256": digest,
        "verified": archive.sha256 is not None,
        "unpacked": [str(p) for p in unpacked],
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    tmp = marker.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, marker)
    return unpacked
