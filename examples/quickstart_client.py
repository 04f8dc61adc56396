"""The README's quick-start client: connect with a token, sync one document."""

import asyncio
import sys

import socketio

DOC = "01k00000000000000000000001"


async def main(token: str, url: str = "http://127.0.0.1:8000") -> None:
    sio = socketio.AsyncClient()
    identity = asyncio.get_running_loop().create_future()
    sio.on("identity", lambda data: identity.set_result(data))
    sio.on("dirty", lambda data: print("dirty:", data))
    # A refused connection: the server's reason, e.g. a wrong token.
    sio.on("connect_error", lambda data: print("connect_error:", data["message"]))
    auth = {"deviceId": "my-laptop", "clientId": "tab-1", "claimedUserId": None, "token": token}
    try:
        await sio.connect(url, transports=["websocket"], auth=auth)
    except socketio.exceptions.ConnectionError:
        sys.exit(1)
    print("identity:", await identity)
    request = {
        "type": "doc",
        "docId": DOC,
        # One DocNode batch: [ordered operations, state patch]. It inserts the
        # paragraph "p1" at the start of the document and sets its text.
        "operations": [[[[0, [["p1", "p"]], 0, 0, 0]], {"p1": {"text": '"Hello, world"'}}]],
        "serializedDoc": None,
        "clock": 0,
    }
    print("sync:", await sio.call("sync", request))
    await sio.disconnect()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], *sys.argv[2:]))
