"""Running one step of a report script: the command echoed, its output
appended to the report's log, the report stopped if it fails."""

import shlex
import subprocess
import sys


def run(command, log, script):
    """Runs `command`, its output appended to `log`; stops `script` if it fails."""
    print("+", shlex.join(command), flush=True)
    log.write(f"+ {shlex.join(command)}\n")
    log.flush()
    done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        sys.exit(f"{script}: failed (exit {done.returncode}): {shlex.join(command)}; see {log.name}")
