"""The boto3 peer for bench/secrets.sh: what a Python entrypoint script does to load a path of
SSM parameters into the environment and start the app (here /bin/true)."""
import os
import subprocess
import sys

import boto3

path = sys.argv[1]
ssm = boto3.client("ssm")
env = dict(os.environ)
for page in ssm.get_paginator("get_parameters_by_path").paginate(Path=path, Recursive=True, WithDecryption=True):
    for p in page["Parameters"]:
        env[p["Name"].rsplit("/", 1)[-1]] = p["Value"]
sys.exit(subprocess.run(sys.argv[2:], env=env).returncode)
