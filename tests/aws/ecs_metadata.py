"""A stand-in for the ECS task metadata endpoint v4 (moto has none; ECS serves it on
169.254.170.2 inside a task). GET /v4/cruddur-task answers the container's metadata and
GET /v4/cruddur-task/task the task's, shaped as Fargate's (fields the agent reads, and a few
it does not). Anything else is 404.

Usage: ecs_metadata.py PORT   (prints "ready PORT"; runs until killed)
"""
import http.server
import json
import sys

ARN = "arn:aws:ecs:us-west-2:111122223333"
CONTAINER = {
    "DockerId": "cafe0123456789abcdef-1111", "Name": "backend-flask", "DockerName": "backend-flask",
    "Image": "111122223333.dkr.ecr.us-west-2.amazonaws.com/backend-flask:latest",
    "ContainerARN": f"{ARN}:container/cruddur/cafe0123/5f3b", "LogDriver": "awslogs",
    "LogOptions": {"awslogs-group": "/cruddur/fargate-cluster", "awslogs-region": "us-west-2",
                   "awslogs-stream": "backend-flask/backend-flask/cafe0123"},
    "Networks": [{"NetworkMode": "awsvpc", "IPv4Addresses": ["10.0.1.23"]}],
}
TASK = {
    "Cluster": f"{ARN}:cluster/cruddur", "TaskARN": f"{ARN}:task/cruddur/cafe0123456789abcdef",
    "Family": "backend-flask", "Revision": "7", "DesiredStatus": "RUNNING", "KnownStatus": "RUNNING",
    "AvailabilityZone": "us-west-2b", "LaunchType": "FARGATE", "Containers": [CONTAINER],
}


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_GET(self):
        answer = {"/v4/cruddur-task": CONTAINER, "/v4/cruddur-task/task": TASK}.get(self.path)
        data = json.dumps(answer).encode() if answer else b"not found"
        self.send_response(200 if answer else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


server = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
print("ready", server.server_address[1], flush=True)
server.serve_forever()
