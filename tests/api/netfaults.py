"""A TCP proxy to stop or hang a real service for one client, as a network fault would."""

from __future__ import annotations

import contextlib
import socket
import threading


class TcpProxy:
    """A loopback TCP proxy in front of a real service, to stop or hang it for one client.

    ``forward`` passes bytes both ways; ``refuse`` drops every connection, as a stopped
    service would; ``hang`` keeps connections open but passes nothing, as a wedged one would.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.mode = "forward"
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.1)
        self.port = int(self._server.getsockname()[1])
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def set_mode(self, mode: str) -> None:
        self.mode = mode
        if mode != "forward":
            self._drop_all(close=mode == "refuse")

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._drop_all(close=True)
        self._server.close()

    def _drop_all(self, *, close: bool) -> None:
        if not close:
            return
        with self._lock:
            sockets, self._open = self._open, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            if self.mode == "refuse":
                client.close()
                continue
            with self._lock:
                self._open.append(client)
            if self.mode == "hang":
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=2)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open.append(upstream)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        source.settimeout(None)
        try:
            while chunk := source.recv(65536):
                while self.mode == "hang":
                    if self._stop.wait(0.05):
                        return
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)
