"""psycopg 3: server-side parameters, executemany, a transaction block,
COPY out and in (text and binary), a prepared statement."""

import psycopg

from common import err, out

with psycopg.connect("", autocommit=False) as conn:
    cur = conn.cursor()
    cur.execute("SELECT id, name, %s::int + 1 AS n FROM customers WHERE id = %s", (41, 1))
    out("select", cur.statusmessage, cur.fetchall())
    cur.execute("CREATE TABLE p3 (id int primary key, v text)")
    cur.executemany("INSERT INTO p3 VALUES (%s, %s)", [(1, "a"), (2, "b"), (3, None)])
    out("executemany", cur.statusmessage, cur.rowcount)
    conn.commit()
    for i in range(7):
        cur.execute("SELECT v FROM p3 WHERE id = %s", (1 + i % 3,), prepare=True)
        cur.fetchall()
    out("prepared", cur.statusmessage)
    try:
        with cur.copy("COPY p3 TO STDOUT") as copy:
            rows = [bytes(b) for b in copy]
        out("copy out", cur.statusmessage, rows)
    except psycopg.Error as e:
        err("copy out", e)
        conn.rollback()
    try:
        with cur.copy("COPY p3 (id, v) FROM STDIN") as copy:
            copy.write_row((4, "d"))
            copy.write_row((5, None))
        out("copy in", cur.statusmessage, cur.rowcount)
        conn.commit()
    except psycopg.Error as e:
        err("copy in", e)
        conn.rollback()
    try:
        with cur.copy("COPY (SELECT id, v FROM p3 ORDER BY id) TO STDOUT (FORMAT BINARY)") as copy:
            copy.set_types(["int4", "text"])
            rows = list(copy.rows())
        out("copy binary out", rows)
    except psycopg.Error as e:
        err("copy binary out", e)
        conn.rollback()
    cur.execute("UPDATE p3 SET v = upper(v) WHERE v IS NOT NULL RETURNING id, v")
    out("update returning", cur.statusmessage, sorted(cur.fetchall()))
    conn.commit()
    cur.execute("DROP TABLE p3")
    conn.commit()
    out("done")
