"""An app that counts with a StatsD client (pystatsd): waits for ADDRESS_FILE (HOST:PORT, the
port the agent bound), then sends 20 increments of `cruddur.requests` (tag-less, plain StatsD),
20 timings `cruddur.latency` of 0..19 ms, and the gauge `cruddur.queue` = 7, and exits.

Usage: statsd_send.py ADDRESS_FILE
"""
import os
import sys
import time

import statsd

path = sys.argv[1]
while not os.path.exists(path):
    time.sleep(0.02)
host, port = open(path).read().strip().rsplit(":", 1)
client = statsd.StatsClient(host, int(port))
for i in range(20):
    client.incr("cruddur.requests")
    client.timing("cruddur.latency", i)
client.gauge("cruddur.queue", 7)
