"""Sends X-Ray segments over UDP the way the SDKs do (daemon protocol), and records their ids.
Usage: send_segments.py HOST:PORT COUNT IDS_FILE [PAD_BYTES] [then-exec CMD...]
HOST:PORT "-" means $AWS_XRAY_DAEMON_ADDRESS, as the SDKs read it.
Writes one trace id per line to IDS_FILE after sending; with `then-exec`, replaces itself with CMD."""
import json
import os
import secrets
import socket
import sys
import time

address = os.environ["AWS_XRAY_DAEMON_ADDRESS"] if sys.argv[1] == "-" else sys.argv[1]
host, port = address.rsplit(":", 1)
count, ids_file = int(sys.argv[2]), sys.argv[3]
pad = int(sys.argv[4]) if len(sys.argv) > 4 and sys.argv[4].isdigit() else 0
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
ids = []
for i in range(count):
    now = time.time()
    trace_id = f"1-{int(now):08x}-{secrets.token_hex(12)}"
    seg = {"trace_id": trace_id, "id": secrets.token_hex(8), "name": "load", "start_time": now, "end_time": now + 0.001,
           "annotations": {"n": i, "pad": "x" * pad}}
    sock.sendto(b'{"format": "json", "version": 1}\n' + json.dumps(seg).encode(), (host, int(port)))
    ids.append(trace_id)
    if i % 50 == 49:
        time.sleep(0.005)  # a burst at a time, as an app under load would
with open(ids_file + ".tmp", "w") as f:
    f.write("\n".join(ids) + "\n")
os.rename(ids_file + ".tmp", ids_file)
if "then-exec" in sys.argv:
    cmd = sys.argv[sys.argv.index("then-exec") + 1:]
    os.execvp(cmd[0], cmd)
