"""psycopg2: copy_to / copy_from (which send `COPY ... TO STDOUT WITH
DELIMITER AS E'\\t' NULL AS '\\N'` and `COPY ... FROM STDIN WITH ...`),
copy_expert with CSV, a plain query with parameters."""

import io

import psycopg2

from common import err, out

conn = psycopg2.connect("")
cur = conn.cursor()
cur.execute("SELECT id, name FROM customers WHERE id >= %s ORDER BY id", (2,))
out("select", cur.statusmessage, cur.fetchall())

buf = io.StringIO()
try:
    cur.copy_to(buf, "orders", columns=("id", "customer_id", "amount", "placed_at"))
    out("copy_to orders", cur.statusmessage, cur.rowcount, repr(buf.getvalue()))
except psycopg2.Error as e:
    err("copy_to orders", e)
    conn.rollback()

buf = io.StringIO()
try:
    cur.copy_to(buf, "customers", sep="|", null="<null>", columns=("id", "name"))
    out("copy_to customers sep", cur.statusmessage, repr(buf.getvalue()))
except psycopg2.Error as e:
    err("copy_to customers sep", e)
    conn.rollback()

cur.execute("CREATE TABLE imported (id int, label text, note text)")
conn.commit()
try:
    cur.copy_from(io.StringIO("1\tone\t\\N\n2\ttwo\tsecond\n"), "imported")
    out("copy_from", cur.statusmessage, cur.rowcount)
    conn.commit()
except psycopg2.Error as e:
    err("copy_from", e)
    conn.rollback()
try:
    cur.copy_expert("COPY imported FROM STDIN WITH (FORMAT csv, HEADER)", io.StringIO("id,label,note\n3,three,\"a, b\"\n"))
    out("copy_expert from csv", cur.statusmessage, cur.rowcount)
    conn.commit()
except psycopg2.Error as e:
    err("copy_expert from csv", e)
    conn.rollback()
buf = io.StringIO()
try:
    cur.copy_expert("COPY (SELECT * FROM imported ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER)", buf)
    out("copy_expert to csv", cur.statusmessage, repr(buf.getvalue()))
except psycopg2.Error as e:
    err("copy_expert to csv", e)
    conn.rollback()
cur.execute("SELECT * FROM imported ORDER BY id")
out("imported", cur.fetchall())
cur.execute("DROP TABLE imported")
conn.commit()
out("done")
