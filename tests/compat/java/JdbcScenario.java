// pgjdbc (Debian's libpostgresql-jdbc-java) with currentSchema=public: a
// statement, a PreparedStatement run past prepareThreshold (server-side
// named statements), a batch, a transaction, an error's SQLState.
// Run with `java -cp postgresql.jar JdbcScenario.java <port> <db>`; the user
// and (direct run only) password come from PGUSER / PGPASSWORD.
import java.sql.*;
import java.util.*;

public class JdbcScenario {
    static void out(Object... parts) {
        StringJoiner j = new StringJoiner(" | ");
        for (Object p : parts) j.add(String.valueOf(p));
        System.out.println(j);
    }

    static String rows(ResultSet rs) throws SQLException {
        List<String> r = new ArrayList<>();
        int n = rs.getMetaData().getColumnCount();
        while (rs.next()) {
            List<String> row = new ArrayList<>();
            for (int i = 1; i <= n; i++) row.add(rs.getString(i));
            r.add(row.toString());
        }
        return r.toString();
    }

    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://127.0.0.1:" + args[0] + "/" + args[1] + "?currentSchema=public&sslmode=disable&connectTimeout=10";
        Properties p = new Properties();
        p.setProperty("user", System.getenv("PGUSER"));
        String pw = System.getenv("PGPASSWORD");
        if (pw != null) p.setProperty("password", pw);
        try (Connection c = DriverManager.getConnection(url, p)) {
            try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SELECT current_schema(), count(*) FROM customers")) {
                out("schema", rows(rs));
            }
            try (PreparedStatement ps = c.prepareStatement("SELECT name FROM customers WHERE id = ?")) {
                List<String> names = new ArrayList<>();
                for (int i = 0; i < 8; i++) {
                    ps.setInt(1, 1 + i % 3);
                    try (ResultSet rs = ps.executeQuery()) { names.add(rows(rs)); }
                }
                out("prepared", names);
            }
            c.setAutoCommit(false);
            try (Statement s = c.createStatement()) {
                s.execute("CREATE TABLE jdbc_t (id int primary key, v text)");
            }
            try (PreparedStatement ps = c.prepareStatement("INSERT INTO jdbc_t VALUES (?, ?)")) {
                for (int i = 1; i <= 3; i++) { ps.setInt(1, i); ps.setString(2, "v" + i); ps.addBatch(); }
                out("batch", Arrays.toString(ps.executeBatch()));
            }
            c.commit();
            c.setAutoCommit(true);
            try (Statement s = c.createStatement()) {
                out("update", s.executeUpdate("UPDATE jdbc_t SET v = upper(v) WHERE id > 1"));
                try (ResultSet rs = s.executeQuery("SELECT * FROM jdbc_t ORDER BY id")) { out("rows", rows(rs)); }
                try {
                    s.executeQuery("SELECT * FROM jdbc_missing");
                    out("missing", "ok");
                } catch (SQLException e) {
                    out("missing", "ERROR", e.getSQLState());
                    System.err.println("missing: " + e.getMessage());
                }
                try (ResultSet rs = c.getMetaData().getTables(null, "public", "jdbc_t", null)) { out("metadata", rows(rs).contains("jdbc_t")); }
                out("drop", s.executeUpdate("DROP TABLE jdbc_t"));
            }
        } catch (SQLException e) {
            out("connect", "ERROR", e.getSQLState());
            System.err.println("jdbc: " + e.getMessage());
        }
        out("done");
    }
}
