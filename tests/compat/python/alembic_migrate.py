"""Alembic: upgrade to head (three migrations in one transaction), show the
data, downgrade one step, downgrade to base, upgrade again."""

import os
import sys

import psycopg2
from alembic import command
from alembic.config import Config

from common import out

here = os.path.dirname(os.path.abspath(__file__))
cfg = Config()
cfg.set_main_option("script_location", os.path.join(here, "alembic_project"))


def state(what):
    conn = psycopg2.connect("")
    cur = conn.cursor()
    cur.execute("SELECT to_regclass('accounts') IS NOT NULL, to_regclass('ledger') IS NOT NULL, to_regclass('alembic_version') IS NOT NULL")
    accounts, ledger, version = cur.fetchone()
    rows = []
    if accounts:
        cur.execute("SELECT * FROM accounts ORDER BY id")
        rows = cur.fetchall()
    if ledger:
        cur.execute("SELECT account_id, amount FROM ledger ORDER BY id")
        rows += cur.fetchall()
    v = None
    if version:
        cur.execute("SELECT version_num FROM alembic_version")
        v = cur.fetchall()
    out(what, accounts, ledger, v, rows)
    conn.close()


ok = True
for step, args in [("upgrade head", (command.upgrade, "head")), ("downgrade -1", (command.downgrade, "-1")),
                   ("downgrade base", (command.downgrade, "base")), ("upgrade again", (command.upgrade, "head"))]:
    try:
        args[0](cfg, args[1])
        out(step, "ok")
    except Exception as e:  # the driver's error, with its SQLSTATE
        code = getattr(getattr(e, "orig", None), "pgcode", None)
        out(step, "ERROR", code)
        print(f"{step}: {e}", file=sys.stderr, flush=True)
        ok = False
    state(step)
out("done", ok)
