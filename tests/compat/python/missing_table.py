"""The probe clients use to ask whether a table exists: catch 42P01. Then
create it and use it at once (no stale "missing" answer), also inside one
transaction (as transactional migrations do)."""

import psycopg2

from common import err, out

conn = psycopg2.connect("")
conn.autocommit = True
cur = conn.cursor()
for q in ["SELECT * FROM nope", "SELECT count(*) FROM public.nope_either", "INSERT INTO nope VALUES (1)"]:
    try:
        cur.execute(q)
        out(q, "ok", cur.statusmessage)
    except psycopg2.Error as e:
        err(q, e)
cur.execute("SELECT to_regclass('nope') IS NULL")
out("to_regclass", cur.fetchone())
cur.execute("CREATE TABLE nope (id int, label text)")
out("create", cur.statusmessage)
for q in ["INSERT INTO nope VALUES (1, 'x')", "SELECT * FROM nope", "UPDATE nope SET label = 'y' WHERE id = 1"]:
    try:
        cur.execute(q)
        out(q, "ok", cur.statusmessage, cur.fetchall() if cur.description else None)
    except psycopg2.Error as e:
        err(q, e)
conn.autocommit = False
try:
    cur.execute("CREATE TABLE in_tx (id int, total int)")
    cur.execute("INSERT INTO in_tx SELECT id, id * 10 FROM customers")
    out("in tx insert", cur.statusmessage)
    cur.execute("SELECT * FROM in_tx ORDER BY id")
    out("in tx select", cur.fetchall())
    conn.commit()
except psycopg2.Error as e:
    err("in tx", e)
    conn.rollback()
conn.autocommit = True
cur.execute("DROP TABLE IF EXISTS nope, in_tx")
out("done")
