"""Writing guest physical memory through QEMU's gdbstub (GDB remote serial protocol).

No QMP or HMP command writes guest memory; the gdbstub can: with
``Qqemu.PhyMemMode:1`` an ``M addr,len:hex`` packet writes physical memory.  Used by the
negative controls, which must alter a page of a paused guest on purpose."""

from __future__ import annotations

import socket

from testbed.wait import WaitTimeout, wait_until


class GdbError(Exception):
    pass


class GdbRemote:
    def __init__(self, host: str, port: int, timeout: float = 10.0) -> None:
        tried = ["nothing yet"]

        def connected() -> socket.socket | None:
            try:
                return socket.create_connection((host, port), timeout=timeout)
            except OSError as exc:
                tried[0] = str(exc)
                return None

        try:
            self.sock = wait_until(
                connected, what=f"gdbstub at {host}:{port}", timeout=timeout, last=lambda: tried[0]
            )
        except WaitTimeout as exc:
            raise GdbError(str(exc)) from None
        self.buf = b""

    @staticmethod
    def frame(payload: str) -> bytes:
        checksum = sum(payload.encode()) % 256
        return f"${payload}#{checksum:02x}".encode()

    def _read_packet(self) -> str:
        while True:
            start = self.buf.find(b"$")
            end = self.buf.find(b"#", start + 1) if start >= 0 else -1
            if start >= 0 and end >= 0 and len(self.buf) >= end + 3:
                payload = self.buf[start + 1 : end]
                self.buf = self.buf[end + 3 :]
                self.sock.sendall(b"+")
                return payload.decode()
            data = self.sock.recv(4096)
            if not data:
                raise GdbError("gdbstub closed the connection")
            self.buf += data

    def command(self, payload: str) -> str:
        self.sock.sendall(self.frame(payload))
        return self._read_packet()

    def write_physical(self, address: int, data: bytes) -> None:
        if self.command("Qqemu.PhyMemMode:1") != "OK":
            raise GdbError("this QEMU's gdbstub cannot address physical memory")
        answer = self.command(f"M{address:x},{len(data):x}:{data.hex()}")
        if answer != "OK":
            raise GdbError(f"writing {len(data)} bytes at {address:#x} failed: {answer}")

    def close(self) -> None:
        # No detach packet: QEMU resumes the VM on "D", and a negative control must leave
        # a paused VM paused.  Closing the connection changes nothing.
        self.sock.close()
