"""Shared by the scenario scripts: a transcript on stdout that the Rust
driver (tests/tests/e2e_compat.rs) compares between the run through the
interceptor and the same run straight to PostgreSQL. Connection settings
come from libpq's environment (PGHOST, PGPORT, PGDATABASE, PGUSER and, for
the direct run only, PGPASSWORD); nothing printed names the database."""

import sys


def out(*parts):
    print(" | ".join(str(p) for p in parts), flush=True)


def err(what, e):
    """An error as the transcript shows it: its SQLSTATE (what clients
    branch on); the message goes to stderr for the findings."""
    code = getattr(e, "pgcode", None) or getattr(e, "sqlstate", None)
    diag = getattr(e, "diag", None)
    if code is None and diag is not None:
        code = getattr(diag, "sqlstate", None)
    out(what, "ERROR", code)
    print(f"{what}: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
