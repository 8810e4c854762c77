"""Real HTTP(S) servers on 127.0.0.1 for outbound checks: provider websites and a fake NPPES registry."""
from __future__ import annotations

import json
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable
from urllib.parse import parse_qs, urlsplit

NPPES_RECORDINGS = Path(__file__).resolve().parent.parent / "data" / "public" / "nppes_api_responses"

# (status, headers, body) for a request path.
Answer = tuple[int, dict, bytes]


class LocalServer:
    """A threaded HTTP server on 127.0.0.1; `hits` records every path asked for."""

    def __init__(self, answer: Callable[[str, dict], Answer], tls: ssl.SSLContext | None = None):
        self.hits: list[str] = []
        self.answer = answer
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                outer.hits.append(self.path)
                status, headers, body = outer.answer(self.path, dict(self.headers))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.scheme = "https" if tls else "http"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, host: str = "127.0.0.1", path: str = "/") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def html_page(body: str, status: int = 200) -> Answer:
    return status, {"Content-Type": "text/html; charset=utf-8"}, f"<html><body>{body}</body></html>".encode()


def redirect(location: str, status: int = 302) -> Answer:
    return status, {"Location": location}, b""


def make_certificates(folder: Path, names: list[str]) -> tuple[Path, Path, Path]:
    """A throwaway CA and a certificate for `names` signed by it: (ca.pem, cert.pem, key.pem)."""
    ca_key, ca, key, csr, cert = (folder / n for n in ("ca.key", "ca.pem", "site.key", "site.csr", "site.pem"))
    ext = folder / "ext.cnf"
    ext.write_text("subjectAltName=" + ",".join(f"DNS:{n}" for n in names) + "\n")
    run = lambda *args: subprocess.run(["openssl", *args], check=True, capture_output=True)  # noqa: E731
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca), "-days", "2",
        "-subj", "/CN=Test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={names[0]}")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial", "-out", str(cert),
        "-days", "2", "-extfile", str(ext))
    return ca, cert, key


def tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


def recorded_nppes_records() -> dict[str, dict]:
    """Every result in the recordings by NPI, exactly as recorded (integer or string numbers, gender or sex)."""
    records: dict[str, dict] = {}
    for path in sorted(NPPES_RECORDINGS.glob("*.json")):
        for result in json.loads(path.read_text()).get("results", []):
            records.setdefault(str(result["number"]), result)
    return records


def fake_nppes() -> LocalServer:
    """Answers ?version=2.1&number=N with the recorded result for N; the recorded error and empty answers otherwise."""
    records = recorded_nppes_records()
    error = (NPPES_RECORDINGS / "ropensci_npi_api-8d2d52.json").read_bytes()
    empty = (NPPES_RECORDINGS / "ropensci_npi_api-a2f836.json").read_bytes()

    def answer(path: str, headers: dict) -> Answer:
        query = parse_qs(urlsplit(path).query)
        number = (query.get("number") or [""])[0]
        json_type = {"Content-Type": "application/json"}
        if not number:
            return 200, json_type, error  # the registry reports errors with HTTP 200
        if number not in records:
            return 200, json_type, empty
        return 200, json_type, json.dumps({"result_count": 1, "results": [records[number]]}).encode()

    return LocalServer(answer)
