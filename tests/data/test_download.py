"""Download end to end against a local HTTP server: progress, cut + resume, verification."""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from maxvit.data.download import download
from maxvit.errors import UserError
from tests.data.util import run_cli
from tests.helpers import MINI_ARCHIVE


class Server:
    """Serves `payload` at /tiny-imagenet-200.zip with Range support; can cut a response."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.cut_at: int | None = None  # close the connection after this many body bytes, once
        self.ranges: list[str | None] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep the test output clean
                pass

            def do_GET(self) -> None:
                if self.path != "/tiny-imagenet-200.zip":
                    self.send_error(404)
                    return
                header = self.headers.get("Range")
                server.ranges.append(header)
                data = server.payload
                start = int(header.split("=")[1].split("-")[0]) if header else 0
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.end_headers()
                    return
                self.send_response(206 if header else 200)
                if header:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                body = data[start:]
                if server.cut_at is not None:
                    body, server.cut_at = body[: server.cut_at], None
                    self.wfile.write(body)
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(body)

        class Quiet(http.server.ThreadingHTTPServer):
            def handle_error(self, request, client_address) -> None:
                pass  # a client that stops reading (size check) breaks the pipe: expected

        self.httpd = Quiet(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/tiny-imagenet-200.zip"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def payload(synthetic_archive: Path) -> bytes:
    """The mini archive where present (the real thing), else the synthetic one."""
    return (MINI_ARCHIVE if MINI_ARCHIVE.exists() else synthetic_archive).read_bytes()


@pytest.fixture
def server(payload: bytes) -> Iterator[Server]:
    srv = Server(payload)
    yield srv
    srv.close()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_download_verifies_and_renames(server, payload, tmp_path):
    path = download(server.url, tmp_path, md5=md5(payload), quiet=True)
    assert path == tmp_path / "tiny-imagenet-200.zip"
    assert path.read_bytes() == payload
    assert not (tmp_path / "tiny-imagenet-200.zip.part").exists()
    # already there and valid: not fetched again
    requests = len(server.ranges)
    assert download(server.url, tmp_path, md5=md5(payload), quiet=True) == path
    assert len(server.ranges) == requests


def test_cut_connection_then_resume(server, payload, tmp_path):
    server.cut_at = len(payload) // 2
    with pytest.raises(UserError, match="run the same command again to resume"):
        download(server.url, tmp_path, md5=md5(payload), quiet=True)
    part = tmp_path / "tiny-imagenet-200.zip.part"
    assert not (tmp_path / "tiny-imagenet-200.zip").exists()
    assert 0 < part.stat().st_size < len(payload)
    path = download(server.url, tmp_path, md5=md5(payload), quiet=True)
    assert server.ranges[-1] == f"bytes={len(payload) // 2}-"  # resumed, not restarted
    assert path.read_bytes() == payload and not part.exists()


def test_complete_part_file_is_verified_without_refetching(server, payload, tmp_path):
    (tmp_path / "tiny-imagenet-200.zip.part").write_bytes(payload)
    path = download(server.url, tmp_path, md5=md5(payload), quiet=True)
    assert path.read_bytes() == payload


def test_md5_mismatch_leaves_no_valid_looking_file(server, tmp_path):
    with pytest.raises(UserError, match="MD5 mismatch.*partial file was deleted"):
        download(server.url, tmp_path, md5="0" * 32, quiet=True)
    assert list(tmp_path.iterdir()) == []


def test_size_mismatch_is_refused(server, payload, tmp_path):
    with pytest.raises(UserError, match=f"is {len(payload)} bytes, expected 123"):
        download(server.url, tmp_path, size=123, quiet=True)
    assert not (tmp_path / "tiny-imagenet-200.zip").exists()


def test_unreachable_url_is_a_one_line_user_error(tmp_path):
    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(UserError, match="cannot reach") as info:
        download(f"http://127.0.0.1:{port}/tiny-imagenet-200.zip", tmp_path, quiet=True)
    assert "\n" not in str(info.value)


def test_http_error_status(server, tmp_path):
    with pytest.raises(UserError, match="answered 404"):
        download(server.url.replace("tiny-imagenet-200", "other"), tmp_path, quiet=True)


def test_cli_download(server, payload, tmp_path, capsys):
    assert (
        run_cli("download", "--root", str(tmp_path), "--url", server.url, "--md5", md5(payload))
        == 0
    )
    assert (tmp_path / "tiny-imagenet-200.zip").read_bytes() == payload
    capsys.readouterr()
    assert (
        run_cli("download", "--root", str(tmp_path / "b"), "--url", server.url, "--md5", "1" * 32)
        == 2
    )
    assert capsys.readouterr().err.startswith("error: MD5 mismatch")
