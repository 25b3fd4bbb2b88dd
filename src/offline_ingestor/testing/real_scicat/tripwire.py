"""Kill the backend between an origdatablock's insert and its dataset's totals update.

The backend creates a block in two database writes (insert the block, then ``$inc`` the
dataset's ``size``/``numberOfFiles``). :class:`DbTripwire` relays the backend's MongoDB
connections to the database; once armed, it holds back the first write to the dataset
collection that follows an insert into the origdatablock collection and SIGKILLs the backend
instead, so the block is stored and the totals never are: exactly the crash it models, at
the same point every time (a timer after the HTTP POST would land before, between or after).
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable

from ..processes import free_port

__all__ = ["DbTripwire", "command_of"]

_OP_MSG = 2013


def command_of(message: bytes) -> tuple[str, str] | None:
    """(command, collection) of an OP_MSG, e.g. ("insert", "OrigDatablock"); None for others."""
    if len(message) < 26 or struct.unpack_from("<i", message, 12)[0] != _OP_MSG or message[20] != 0:
        return None
    # Section kind 0: a BSON document whose first element is {command: collection}.
    offset = 21 + 4
    kind = message[offset]
    end = message.index(b"\x00", offset + 1)
    name = message[offset + 1 : end].decode(errors="replace")
    if kind != 0x02:  # the collection is a string for insert/update/findAndModify
        return name, ""
    size = struct.unpack_from("<i", message, end + 1)[0]
    return name, message[end + 5 : end + 4 + size].decode(errors="replace")


def _is_block_insert(command: tuple[str, str] | None) -> bool:
    return command is not None and command[0] == "insert" and "datablock" in command[1].lower()


def _is_dataset_write(command: tuple[str, str] | None) -> bool:
    return (
        command is not None
        and command[0] in ("update", "findAndModify")
        and command[1].lower() in ("dataset", "datasets")
    )


class DbTripwire:
    """A TCP relay 127.0.0.1:<port> -> the database that can kill the backend mid-create."""

    def __init__(self, db_port: int, kill: Callable[[], None]) -> None:
        self.db_port = db_port
        self.port = free_port()
        self.kill = kill
        self.armed = False
        self.fired = threading.Event()
        self.seen: list[tuple[str, str]] = []
        self._after_insert = False
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._stopping = False
        threading.Thread(target=self._accept, daemon=True, name="db-tripwire").start()

    def arm(self) -> None:
        """Fire on the next block insert followed by a dataset write (once)."""
        with self._lock:
            self.armed, self._after_insert = True, False
            self.fired.clear()

    def _accept(self) -> None:
        while not self._stopping:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.db_port))
            threading.Thread(target=self._client_to_db, args=(client, server), daemon=True).start()
            threading.Thread(target=self._copy, args=(server, client), daemon=True).start()

    @staticmethod
    def _copy(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                sock.close()

    def _client_to_db(self, client: socket.socket, server: socket.socket) -> None:
        try:
            while header := _read(client, 16):
                length = struct.unpack_from("<i", header)[0]
                message = header + _read(client, length - 16)
                if self._trips(command_of(message)):
                    self.kill()
                    self.fired.set()
                    return  # the dataset write never reaches the database
                server.sendall(message)
        except OSError:
            pass
        finally:
            for sock in (client, server):
                sock.close()

    def _trips(self, command: tuple[str, str] | None) -> bool:
        with self._lock:
            if command is not None and command[0] in ("insert", "update", "findAndModify", "delete"):
                self.seen.append(command)
            if not self.armed:
                return False
            if _is_block_insert(command):
                self._after_insert = True
            elif self._after_insert and _is_dataset_write(command):
                self.armed = False
                return True
            return False

    def stop(self) -> None:
        self._stopping = True
        self._listener.close()


def _read(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return b""
        data += chunk
    return data
