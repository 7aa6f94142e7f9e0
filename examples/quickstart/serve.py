"""A tiny prediction endpoint: GET /predict?x=0.5 -> {"y": ...}."""
import json
import os
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, urlparse

with open(os.environ.get("MODEL_PATH", "model.json")) as f:
    MODEL = json.load(f)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        x = float(parse_qs(urlparse(self.path).query).get("x", ["0"])[0])
        body = json.dumps({"y": MODEL["w"] * x + MODEL["b"]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)


HTTPServer(("127.0.0.1", int(os.environ.get("PORT", "8000"))), Handler).serve_forever()
