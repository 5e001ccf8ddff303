"""asyncpg: an enum type used in a temp table (asyncpg introspects the type
with its own catalog query), prepared statements, fetch, executemany,
copy_records_to_table."""

import asyncio

import asyncpg

from common import err, out


async def main():
    conn = await asyncpg.connect()
    out("create type", await conn.execute("CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')"))
    out("create temp", await conn.execute("CREATE TEMP TABLE feelings (id int, m mood)"))
    await conn.executemany("INSERT INTO feelings VALUES ($1, $2)", [(1, "ok"), (2, "happy")])
    try:
        rows = await conn.fetch("SELECT id, m FROM feelings ORDER BY id")
        out("fetch enum", [(r["id"], r["m"]) for r in rows])
    except asyncpg.PostgresError as e:
        err("fetch enum", e)
    try:
        stmt = await conn.prepare("SELECT count(*) FROM feelings WHERE m = $1")
        out("prepared", await stmt.fetchval("happy"))
    except asyncpg.PostgresError as e:
        err("prepared", e)
    try:
        out("copy records", await conn.copy_records_to_table("feelings", records=[(3, "sad")]))
    except asyncpg.PostgresError as e:
        err("copy records", e)
    try:
        out("orders", await conn.fetch("SELECT id, amount::text FROM orders WHERE customer_id = $1 ORDER BY id", 1))
    except asyncpg.PostgresError as e:
        err("orders", e)
    out("drop temp", await conn.execute("DROP TABLE feelings"))
    out("drop type", await conn.execute("DROP TYPE mood"))
    await conn.close()
    out("done")


asyncio.run(main())
