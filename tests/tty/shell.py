"""Drives an interactive bash on a pseudo-terminal, as a person at a terminal would, to test the
agent's job control (tests/job_control.rs). Standard library only.

Usage: shell.py AGENT SCENARIO   (AGENT `-`: the bare command, the harness's own control)
  ctrl-z      `agent run -- sh -c ...` in the foreground, Ctrl-Z: the shell says Stopped and
              gives the prompt back; `fg` resumes the app, which finishes with code 0.
  bg-reader   `agent run -- sh -c 'read x; ...' &`: the reader stops on SIGTTIN; `fg` brings
              it back and what is typed reaches it.
  ctrl-c      Ctrl-C stops the app and the agent exits 130, the prompt back at once.

Every wait has a deadline; on failure it prints what the terminal showed and exits 1.
"""

import os
import pty
import re
import select
import sys
import time

DEADLINE = 20.0


class Terminal:
    def __init__(self):
        pid, fd = pty.fork()
        if pid == 0:
            os.environ.update(PS1="PROMPT> ", TERM="dumb", HISTFILE="/dev/null", PROMPT_COMMAND="")
            os.execvp("bash", ["bash", "--norc", "--noprofile", "-i"])
        self.pid, self.fd = pid, fd
        self.seen = b""
        self.pos = 0

    def read_for(self, seconds):
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            r, _, _ = select.select([self.fd], [], [], left)
            if not r:
                return
            try:
                chunk = os.read(self.fd, 4096)
            except OSError:
                return
            if not chunk:
                return
            self.seen += chunk

    def expect(self, pattern, what, deadline=DEADLINE, poke=None):
        """Waits for `pattern` after what was matched last; `poke` is sent every half second
        (for messages the shell prints only before a prompt)."""
        rx = re.compile(pattern.encode())
        end = time.monotonic() + deadline
        while True:
            m = rx.search(self.seen, self.pos)
            if m:
                self.pos = m.end()
                return m
            if time.monotonic() > end:
                self.fail(f"no {what} ({pattern!r}) within {deadline}s")
            if poke:
                self.send(poke)
            self.read_for(0.5)

    def send(self, text):
        os.write(self.fd, text.encode())

    def fail(self, why):
        shown = self.seen.decode(errors="replace")
        print(f"FAILED: {why}\n--- the terminal showed ---\n{shown}\n---", flush=True)
        self.close()
        sys.exit(1)

    def close(self):
        """Kills the shell and everything in its session (jobs left stopped, on a failure)."""
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if int(fields[3]) == self.pid:  # the session id
                    os.kill(int(entry), 9)
            except (OSError, IndexError, ValueError):
                pass
        try:
            os.kill(self.pid, 9)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


def start_app(t, prefix, rest):
    """At the first prompt, runs an app that says `child-ready` first, then `rest`; waits for it."""
    t.expect(r"PROMPT> ", "first prompt")
    t.send(f"{prefix}sh -c 'echo child-ready; {rest}'\n")
    t.expect(r"\nchild-ready", "the app's first line")


def ctrl_z(t, prefix):
    start_app(t, prefix, "sleep 3; echo child-done; exit 7")
    t.send("\x1a")  # Ctrl-Z
    t.expect(r"Stopped", "'Stopped' from the shell after Ctrl-Z")
    t.expect(r"PROMPT> ", "the prompt back after Ctrl-Z")
    t.send("echo prompt-is-back-$((40+2))\n")
    t.expect(r"prompt-is-back-42", "the shell running a command while the app is stopped")
    t.send("fg\n")
    t.expect(r"child-done", "the app finishing after fg")
    t.expect(r"PROMPT> ", "the prompt after the app finished")
    t.send("echo exit=$?\n")
    t.expect(r"exit=7", "the app's exit code")


def bg_reader(t, prefix):
    t.expect(r"PROMPT> ", "first prompt")
    t.send(f"{prefix}sh -c 'read x; echo got-$x' &\n")
    # The shell may report the stop before or after its next prompt: wait for the report only
    # (an empty line makes it print pending job reports).
    t.expect(r"Stopped", "the background reader stopped (SIGTTIN)", poke="\n")
    t.send("fg\n")
    t.expect(r"read x", "fg naming the job")
    t.send("hello\n")
    t.expect(r"got-hello", "the typed line reaching the reader after fg")
    t.expect(r"PROMPT> ", "the prompt after the job finished")
    t.send("echo exit=$?\n")
    t.expect(r"exit=0", "the job's exit code")


def ctrl_c(t, prefix):
    start_app(t, prefix, "sleep 30")
    t.send("\x03")  # Ctrl-C
    t.expect(r"PROMPT> ", "the prompt back after Ctrl-C")
    t.send("echo exit=$?\n")
    t.expect(r"exit=130", "exit code 130 after Ctrl-C")


def main():
    agent, scenario = sys.argv[1], sys.argv[2]
    t = Terminal()
    prefix = "" if agent == "-" else f"{agent} run --log-level warn -- "
    if scenario == "ctrl-z":
        ctrl_z(t, prefix)
    elif scenario == "bg-reader":
        bg_reader(t, prefix)
    elif scenario == "ctrl-c":
        ctrl_c(t, prefix)
    else:
        sys.exit(f"unknown scenario {scenario}")
    t.send("exit\n")
    t.read_for(0.5)
    t.close()
    print("ok")


main()
