"""Forward a loopback port of the test run's network namespace to an address inside another namespace.

The node tier's cluster lives in a network namespace with no link out (tests/node.py). The tests, helm and
kubectl reach its API server through this forwarder: it binds 127.0.0.1:PORT where it starts, then moves
itself into the cluster's namespace (setns) and connects every accepted client to TARGET there. Bytes pass
through unchanged (TLS end to end); no route between the namespaces exists.

    python -m tests.netns_forward /proc/PID/ns/net LISTEN_PORT TARGET_HOST TARGET_PORT
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import socket
import sys

CLONE_NEWNET = 0x40000000


def enter_network_namespace(path: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"setns({path}): {os.strerror(error)}")
    finally:
        os.close(fd)


async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def serve(listener: socket.socket, host: str, port: int) -> None:
    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(host, port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(pump(reader, upstream_writer), pump(upstream_reader, writer))

    server = await asyncio.start_server(client, sock=listener)
    async with server:
        await server.serve_forever()


def main(argv: list[str]) -> None:
    namespace, listen_port, host, port = argv
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", int(listen_port)))
    listener.listen(128)
    enter_network_namespace(namespace)  # the listening socket stays where it was made
    print("ready", flush=True)
    asyncio.run(serve(listener, host, int(port)))


if __name__ == "__main__":
    main(sys.argv[1:])
