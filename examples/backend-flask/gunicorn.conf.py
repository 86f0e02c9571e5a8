"""gunicorn settings for running under the agent.

graceful_timeout must stay below the agent's --stop-timeout (default 25 s), which in turn stays
below the ECS container stopTimeout (default 30 s): ECS sends SIGTERM to the agent, the agent
forwards it to the gunicorn master, the master gives its workers graceful_timeout to finish
in-flight requests, and the agent still has time left for its own final flush before ECS's
SIGKILL.
"""
import os

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '4567')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
graceful_timeout = 20
timeout = 30
accesslog = "-"
