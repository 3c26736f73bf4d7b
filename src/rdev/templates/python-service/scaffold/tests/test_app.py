"""Tests for service.app: a real server on a free loopback port."""

from __future__ import annotations

import http.client
import json
import threading
import unittest

from service.app import SERVICE_NAME, make_server


class ServiceTest(unittest.TestCase):
    def setUp(self) -> None:
        self.server = make_server("127.0.0.1", 0)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def tearDown(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def get(self, path: str) -> tuple[int, dict]:
        conn = http.client.HTTPConnection("127.0.0.1", self.server.server_address[1], timeout=5)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read())
        finally:
            conn.close()

    def test_health_reports_ok(self) -> None:
        status, body = self.get("/health")
        self.assertEqual(status, 200)
        self.assertEqual(body, {"status": "ok", "service": SERVICE_NAME})

    def test_root_greets(self) -> None:
        status, body = self.get("/")
        self.assertEqual(status, 200)
        self.assertIn(SERVICE_NAME, body["message"])

    def test_unknown_path_is_404(self) -> None:
        status, _ = self.get("/nope")
        self.assertEqual(status, 404)


if __name__ == "__main__":
    unittest.main()
