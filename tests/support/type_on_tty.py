#!/usr/bin/env python3
"""Run a command on a new pseudo-terminal and type one line into it, as a user would.

Usage: type_on_tty.py PROMPT LINE -- COMMAND [ARGS...]

Waits until PROMPT has appeared on the terminal and the program has switched the terminal's
echo off, then types LINE and Enter. Prints everything the terminal showed and exits with the
command's exit status (125 when the prompt or the echo switch did not come within 20 s).
Every wait is bounded.
"""
import os
import pty
import select
import sys
import termios
import time

prompt, line, sep, *command = sys.argv[1:]
assert sep == "--" and command, __doc__
pid, fd = pty.fork()
if pid == 0:
    os.execvp(command[0], command)

shown = b""
deadline = time.monotonic() + 20
typed = False


def echo_off():
    return not termios.tcgetattr(fd)[3] & termios.ECHO


while time.monotonic() < deadline:
    ready, _, _ = select.select([fd], [], [], 0.05)
    if ready:
        try:
            data = os.read(fd, 1024)
        except OSError:  # the program ended and closed the terminal
            break
        if not data:
            break
        shown += data
    if not typed and prompt.encode() in shown and echo_off():
        os.write(fd, line.encode() + b"\n")
        typed = True

if not typed or time.monotonic() >= deadline:
    os.kill(pid, 9)  # waiting for input that will not come, or hung
_, status = os.waitpid(pid, 0)
sys.stdout.write(shown.decode(errors="replace"))
sys.exit(os.waitstatus_to_exitcode(status) if typed else 125)
