"""Seeds a moto_server with the secrets the tests load, and writes what the child must see.

Usage: seed.py ENDPOINT EXPECTED_JSON
The JSON maps every environment variable name the full test loads to its exact value; the
test compares the child's environment with it and checks that no value ever appears in the
agent's own output.
"""
import json
import sys

import boto3

endpoint, expected_path = sys.argv[1], sys.argv[2]
kw = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
ssm = boto3.client("ssm", **kw)
sm = boto3.client("secretsmanager", **kw)
expected = {}

# 120 parameters under one path (12 pages of 10), of every type, plus one nested deeper.
types = ["String", "SecureString", "StringList"]
for i in range(120):
    name = f"P{i:03d}"
    value = f"path-value-{i:03d}-q7" if i % 3 != 2 else f"list-{i:03d}-a,list-{i:03d}-b"
    ssm.put_parameter(Name=f"/test/app/{name}", Value=value, Type=types[i % 3])
    expected[name] = value
ssm.put_parameter(Name="/test/app/nested/deep/NESTED_PARAM", Value="nested-value-x1", Type="SecureString")
expected["NESTED_PARAM"] = "nested-value-x1"

# Hard values, loaded one by one.
special = {
    "MULTILINE": "first line of multiline-v\nsecond line\n\nfourth line after a blank\n",
    "UNICODE": "héllo wörld — ✓ 日本語 unicode-v",
    "EQUALS": "equals-v=a=b==c",
    "QUOTES": "quotes-v it's \"double\" `back` $HOME \\n not a newline",
    "ADVANCED_8K": "".join(chr(33 + (i * 7) % 90) for i in range(8192)),
}
for name, value in special.items():
    tier = "Advanced" if len(value) > 4096 else "Standard"
    ssm.put_parameter(Name=f"/test/special/{name}", Value=value, Type="SecureString", Tier=tier)
    expected[name] = value

# Versions and a label.
for v in ["versioned-one", "versioned-two", "versioned-three"]:
    ssm.put_parameter(Name="/test/versioned", Value=v, Type="SecureString", Overwrite=True)
ssm.label_parameter_version(Name="/test/versioned", ParameterVersion=2, Labels=["prod"])
expected.update({"VERSIONED_LATEST": "versioned-three", "VERSIONED_V1": "versioned-one", "VERSIONED_PROD": "versioned-two"})

# The ECS guide's JSON secret, with an empty string among its keys; and a rotated secret.
sm.create_secret(Name="flask-api/database", SecretString=json.dumps(
    {"username": "db-user-k3", "password": "db-pass-=\"'-k3", "port": 5432, "empty": ""}))
expected.update({"DB_USERNAME": "db-user-k3", "DB_PASSWORD": "db-pass-=\"'-k3", "DB_PORT": "5432", "DB_EMPTY": ""})
sm.create_secret(Name="rotating", SecretString="rotating-old-r9")
sm.put_secret_value(SecretId="rotating", SecretString="rotating-new-r9")
expected.update({"ROTATING_NEW": "rotating-new-r9", "ROTATING_OLD": "rotating-old-r9"})

# A small path for the fleet test.
for i in range(5):
    ssm.put_parameter(Name=f"/test/small/S{i}", Value=f"small-value-{i}-z", Type="SecureString")

with open(expected_path, "w") as f:
    json.dump(expected, f)
