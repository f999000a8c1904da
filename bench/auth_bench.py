"""What authentication costs a request: jwk-token (an RS256 JWT, the key set held) beside api-key.

Two real servers run side by side, one per module; a client asks `GET /v1/info` of each in
turn, one request at a time over a kept-alive connection, so both see the same machine noise.
Figures: p50 and p99 of each, and the difference of the p50s (target: the JWT within 0.3 ms of
the api-key). The identity provider's JWKS endpoint counts its fetches: one per server start is
the target (none per request).
"""

from __future__ import annotations

import http.client
import json
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import yaml
from cryptography.hazmat.primitives.asymmetric import rsa

from common import REPO, free_port, percentile, start_server, stop

REQUESTS = 3000
TARGET_MS = 0.3
API_KEY = "lsk_bench-api-key-0123456789abcdefghijklmnopqrstu"


class Jwks:
    def __init__(self, public_jwk: dict[str, Any]) -> None:
        self.fetches = 0
        body = json.dumps({"keys": [public_jwk]}).encode()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.fetches += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def _latencies(ports: dict[str, tuple[int, str]]) -> dict[str, list[float]]:
    connections = {name: http.client.HTTPConnection("127.0.0.1", port, timeout=30) for name, (port, _) in ports.items()}
    found: dict[str, list[float]] = {name: [] for name in ports}
    for n in range(REQUESTS + 200):
        for name, (_, token) in ports.items():
            started = time.perf_counter()
            connections[name].request("GET", "/v1/info", headers={"Authorization": f"Bearer {token}"})
            response = connections[name].getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"{name}: {response.status}")
            if n >= 200:  # the first ones warm up both servers
                found[name].append((time.perf_counter() - started) * 1000)
    return found


def main() -> bool:
    print(f"== auth: GET /v1/info, {REQUESTS} requests each, api-key and jwk-token servers in turn")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(jwt.get_algorithm_by_name("RS256").to_jwk(key.public_key()))
    jwks = Jwks({**public, "kid": "bench", "alg": "RS256", "use": "sig"})
    token = jwt.encode(
        {"user_id": "u-1", "username": "bench", "exp": int(time.time()) + 3600}, key, "RS256", {"kid": "bench"}
    )
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        keys = workdir / "keys.yaml"
        keys.write_text(yaml.safe_dump([{"key": API_KEY, "user_id": "u-1"}]))
        api_auth = {"authentication": {"module": "api-key", "api_key": {"keys_file": str(keys)}}}
        jwk_auth = {"authentication": {"module": "jwk-token", "jwk_config": {"url": jwks.url}}}
        ports = {"api-key": (free_port(), API_KEY), "jwk-token": (free_port(), token)}
        servers = [start_server(workdir / "api", REPO / "docs", ports["api-key"][0], sections=api_auth)]
        try:
            servers.append(start_server(workdir / "jwk", REPO / "docs", ports["jwk-token"][0], sections=jwk_auth))
            found = _latencies(ports)
        finally:
            for server in servers:
                stop(server)
            jwks.server.shutdown()
    p50 = {name: percentile(values, 0.5) for name, values in found.items()}
    for name, values in found.items():
        print(f"  {name:<10} p50 {p50[name]:.3f} ms  p99 {percentile(values, 0.99):.3f} ms")
    extra = p50["jwk-token"] - p50["api-key"]
    ok = extra < TARGET_MS and jwks.fetches == 1
    print(f"  JWT verification adds {extra:.3f} ms at p50 (target < {TARGET_MS} ms; baseline: the api-key server)")
    print(f"  JWKS fetches during {REQUESTS + 200} JWT requests: {jwks.fetches} (target: 1)")
    print(f"  auth: {'PASS' if ok else 'FAIL'}")
    return ok


if __name__ == "__main__":
    main()
