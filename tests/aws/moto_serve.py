"""moto's own threaded server on 127.0.0.1 (or the IP given as the one argument), on a port the
kernel chooses (no guessed free port). Prints "ready PORT"; runs until killed."""
import sys
import time

from moto.server import ThreadedMotoServer

server = ThreadedMotoServer(ip_address=sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1", port=0, verbose=False)
server.start()
print("ready", server.get_host_and_port()[1], flush=True)
while True:
    time.sleep(3600)
