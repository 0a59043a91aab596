#!/usr/bin/env python3
"""A worker in another language: it knows only systemd's protocols.

It takes its listening socket from LISTEN_FDS/LISTEN_PID/LISTEN_FDNAMES
(sd_listen_fds(3)) and reports readiness through NOTIFY_SOCKET (sd_notify(3)).
It answers every GET with one line naming itself and the LISTEN_PID it saw.
"""
import http.server
import os
import signal
import socket
import socketserver
import sys
import threading


def sd_notify(msg):
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return
    if addr[0] == "@":
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(addr)
            s.sendall(msg.encode())
    except OSError:
        pass  # the master is gone


def listen_fds():
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        sys.exit("LISTEN_PID %r is not my pid %d" % (os.environ.get("LISTEN_PID"), os.getpid()))
    n = int(os.environ["LISTEN_FDS"])
    names = os.environ.get("LISTEN_FDNAMES", "").split(":")
    return {names[i] if i < len(names) else str(i): 3 + i for i in range(n)}


LISTEN_PID = os.environ.get("LISTEN_PID")
fds = listen_fds()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = ("python worker pid=%d listen_pid=%s\n" % (os.getpid(), LISTEN_PID)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True

    def __init__(self, fd):
        socketserver.BaseServer.__init__(self, ("", 0), Handler)
        self.socket = socket.socket(fileno=fd)
        self.socket.setblocking(False)  # shared with the other workers

    def get_request(self):
        conn, addr = self.socket.accept()
        conn.setblocking(True)
        return conn, addr


srv = Server(fds["http"])
signal.signal(signal.SIGTERM, lambda *a: threading.Thread(target=srv.shutdown).start())
# A test's crash switch: a worker started while this file exists exits with
# status 1 one second after it is ready.
crash_if = os.environ.get("WORKER_CRASH_IF")
if crash_if and os.path.exists(crash_if):
    threading.Timer(1.0, lambda: os._exit(1)).start()
sd_notify("READY=1")
srv.serve_forever(poll_interval=0.1)
sd_notify("STOPPING=1")
