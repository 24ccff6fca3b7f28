"""Download the official Tiny ImageNet archive: resumable, verified, never half-valid.

Bytes go to ``<name>.part``; an interrupted download keeps it and the next run resumes with an
HTTP Range request. Only a file whose size and MD5 match is renamed to ``<name>``; a mismatch
deletes the partial file.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from maxvit.errors import UserError

OFFICIAL_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
OFFICIAL_MD5 = "90528d7ca1a48142e341f4ef8d21d0de"
OFFICIAL_BYTES = 248_100_043
_BLOCK = 1 << 20
_TIMEOUT_S = 30


def md5_file(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            h.update(block)
    return h.hexdigest()


def _total_size(response: http.client.HTTPResponse, offset: int) -> int | None:
    """Full size of the resource from Content-Range (206) or Content-Length (200)."""
    content_range = response.headers.get("Content-Range")
    if response.status == 206 and content_range and "/" in content_range:
        total = content_range.rsplit("/", 1)[1].strip()
        return int(total) if total.isdigit() else None
    length = response.headers.get("Content-Length")
    if length is None or not length.isdigit():
        return None
    return int(length) + (offset if response.status == 206 else 0)


def _open(url: str, offset: int) -> http.client.HTTPResponse:
    request = urllib.request.Request(url, headers={"User-Agent": "maxvit-data"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        return urllib.request.urlopen(request, timeout=_TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # nothing left to send: the part file is already complete
            raise
        raise UserError(f"{url}: the server answered {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise UserError(f"cannot reach {url}: {reason}") from None


def download(
    url: str = OFFICIAL_URL,
    root: str | Path = "data",
    *,
    md5: str | None = None,
    size: int | None = None,
    quiet: bool = False,
) -> Path:
    """Download `url` into folder `root` and return the verified file.

    `md5` / `size` default to the official values for the official URL; for another URL the
    size announced by the server is checked, and the MD5 only when given. An existing verified
    file is not downloaded again.
    """
    from tqdm import tqdm

    if url == OFFICIAL_URL:
        md5 = md5 or OFFICIAL_MD5
        size = size or OFFICIAL_BYTES
    name = Path(urlparse(url).path).name or "download"
    root = Path(root).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    final = root / name
    part = root / f"{name}.part"
    if final.exists():
        _verify(final, md5, size, final_file=True)
        if not quiet:
            print(f"{final} is already downloaded and verified", file=sys.stderr)
        return final

    offset = part.stat().st_size if part.exists() else 0
    try:
        response = _open(url, offset)
    except urllib.error.HTTPError:  # 416: the part file already holds every byte
        response = None
    if response is not None:
        with response:
            if offset and response.status != 206:  # the server ignored the Range: start over
                offset = 0
            total = _total_size(response, offset)
            if size is not None and total is not None and total != size:
                raise UserError(f"{url} is {total} bytes, expected {size}")
            size = size or total
            if offset and not quiet:
                print(f"resuming {part} at {offset} bytes", file=sys.stderr)
            _receive(response, part, offset, size, quiet, tqdm)
    _verify(part, md5, size, final_file=False)
    os.replace(part, final)
    if not quiet:
        print(f"downloaded {final} ({final.stat().st_size} bytes, verified)", file=sys.stderr)
    return final


def _receive(response, part: Path, offset: int, size: int | None, quiet: bool, tqdm) -> None:
    """Append the response body to `part` (truncated to `offset` first), with a progress bar."""
    received = offset
    with (
        open(part, "r+b" if offset else "wb") as f,
        tqdm(
            total=size,
            initial=offset,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=part.name,
            disable=quiet or None,
        ) as bar,
    ):
        f.seek(offset)
        f.truncate()
        try:
            while block := response.read(_BLOCK):
                f.write(block)
                received += len(block)
                bar.update(len(block))
        except (OSError, http.client.HTTPException) as exc:
            f.flush()
            raise UserError(
                f"download interrupted after {received} of {size or '?'} bytes ({exc!r}); "
                "run the same command again to resume"
            ) from None


def _verify(path: Path, md5: str | None, size: int | None, *, final_file: bool) -> None:
    """Check size and MD5; on a mismatch the partial file is deleted (the final one is kept)."""
    actual_size = path.stat().st_size
    problem = None
    if size is not None and actual_size < size and not final_file:
        raise UserError(
            f"download stopped after {actual_size} of {size} bytes; "
            "run the same command again to resume"
        )
    if size is not None and actual_size != size:
        problem = f"{path} is {actual_size} bytes, expected {size}"
    elif md5 is not None and (digest := md5_file(path)) != md5.lower():
        problem = f"MD5 mismatch for {path}: got {digest}, expected {md5.lower()}"
    if problem is None:
        if md5 is None and not final_file:
            print("no MD5 given: the file was checked by its size only", file=sys.stderr)
        return
    if final_file:
        raise UserError(f"{problem}; delete it and download again")
    path.unlink()
    raise UserError(f"{problem}; the partial file was deleted")
