"""Django: `migrate`, then `manage.py test` twice in a row (the runner
creates test_<db>, migrates it, runs the tests and DROPs it; the second run
needs the first's DROP to have worked), then `migrate shop zero`."""

import os
import re
import subprocess
import sys

from common import out

here = os.path.dirname(os.path.abspath(__file__))
project = os.path.join(here, "django_project")


def manage(*args):
    p = subprocess.run([sys.executable, "manage.py", *args], cwd=project, capture_output=True, text=True, timeout=240)
    sys.stderr.write(f"--- manage.py {' '.join(args)} rc={p.returncode}\n{p.stdout}{p.stderr}")
    return p


p = manage("migrate", "--noinput")
out("migrate", p.returncode, [l.strip() for l in p.stdout.splitlines() if l.strip().startswith("Applying")])
for run in (1, 2):
    p = manage("test", "--noinput", "-v", "1", "shop")
    text = p.stdout + p.stderr
    ran = re.findall(r"^Ran \d+ tests?", text, re.M)
    verdict = re.findall(r"^(OK|FAILED.*)$", text, re.M)
    out(f"test run {run}", p.returncode, ran, verdict)
p = manage("migrate", "shop", "zero", "--noinput")
out("migrate zero", p.returncode)
p = manage("showmigrations", "shop")
out("showmigrations", p.returncode, p.stdout.split())
