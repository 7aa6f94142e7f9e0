"""Serve a `wsgi: module:callable` endpoint with the standard library, on 127.0.0.1:$PORT.

Run as a script inside the endpoint's code (`python3 wsgi_server.py module:callable`), so it needs
nothing but Python: wsgiref's server, one thread per request.
"""

import importlib
import os
import sys
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server


class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 (the stdlib's name)
        sys.stderr.write("%s %s\n" % (self.command, format % args))


def load(target):
    module_name, _, attribute = target.partition(":")
    sys.path.insert(0, os.getcwd())
    app = importlib.import_module(module_name)
    for part in (attribute or "application").split("."):
        app = getattr(app, part)
    return app


if __name__ == "__main__":
    server = make_server("127.0.0.1", int(os.environ.get("PORT", "8000")), load(sys.argv[1]),
                         server_class=ThreadingWSGIServer, handler_class=QuietHandler)
    server.serve_forever()
