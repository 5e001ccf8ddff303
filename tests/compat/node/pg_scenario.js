// node-postgres: simple query, parameterised (unnamed prepared) query, a
// named prepared statement run repeatedly, a transaction, an error's
// SQLSTATE. Connection from libpq's environment variables (pg reads them).
// Prints a transcript compared by tests/tests/e2e_compat.rs.
const { Client } = require("pg");

const out = (...parts) => console.log(parts.map((p) => (typeof p === "string" ? p : JSON.stringify(p))).join(" | "));

async function step(client, what, query) {
  try {
    const r = await client.query(query);
    out(what, r.command, r.rowCount, r.rows);
  } catch (e) {
    out(what, "ERROR", e.code);
    console.error(`${what}: ${e.message}`);
  }
}

(async () => {
  const client = new Client();
  await client.connect();
  await step(client, "simple", "SELECT id, name FROM customers ORDER BY id");
  await step(client, "params", { text: "SELECT id, amount FROM orders WHERE customer_id = $1 ORDER BY id", values: [1] });
  for (let i = 0; i < 3; i++) {
    await step(client, `named ${i}`, { name: "by_id", text: "SELECT name FROM customers WHERE id = $1", values: [i + 1] });
  }
  await step(client, "begin", "BEGIN");
  await step(client, "create", "CREATE TABLE node_t (id serial primary key, v text)");
  await step(client, "insert returning", { text: "INSERT INTO node_t (v) VALUES ($1), ($2) RETURNING id", values: ["a", "b"] });
  await step(client, "commit", "COMMIT");
  await step(client, "missing", "SELECT * FROM node_missing");
  await step(client, "bad syntax", "SELEC 1");
  await step(client, "drop", "DROP TABLE node_t");
  await client.end();
  out("done");
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
