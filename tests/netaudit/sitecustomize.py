"""Put on PYTHONPATH of a process under test: records every outgoing connection it makes.

Appends "host port" lines to the file named by LOCALAI_CONNECT_LOG.
"""

import os
import sys

_log = os.environ.get("LOCALAI_CONNECT_LOG")


def _record(event, args):
    if event == "socket.connect" and _log:
        address = args[1]
        if isinstance(address, tuple):
            with open(_log, "a") as handle:
                handle.write(f"{address[0]} {address[1]}\n")


if _log:
    sys.addaudithook(_record)
