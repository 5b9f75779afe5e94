// A Java application's view of weir through pgjdbc: connect, discover the
// table `items` (id BIGINT, name TEXT, price DOUBLE; ids 1..10, name
// 'item-<id>', price id * 1.5) through DatabaseMetaData, then query it with
// PreparedStatement and read every common type through ResultSet getters.
//
// Run by tests/jdbc.rs as a single-file program:
//   java -cp /usr/share/java/postgresql.jar tests/java/WeirJdbcCheck.java <port>
// The table must exist already. Prints one `ok <check>` or
// `FAIL <check>: <reason>` line per check and exits 1 if any failed, so one
// run shows every failure.

import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.sql.Timestamp;
import java.sql.Types;
import java.time.LocalDateTime;
import java.util.ArrayList;
import java.util.List;

public class WeirJdbcCheck {
    private static final String TABLE = "items";
    private static int failures = 0;

    interface Check {
        void run() throws Exception;
    }

    /** Runs one check, printing ok/FAIL; an exception is a failure, not an abort. */
    static void check(String name, Check body) {
        try {
            body.run();
            System.out.println("ok " + name);
        } catch (Throwable e) {
            failures++;
            System.out.println("FAIL " + name + ": " + describe(e));
        }
        System.out.flush();
    }

    static String describe(Throwable e) {
        StringBuilder sb = new StringBuilder(e.toString());
        if (e instanceof SQLException) {
            sb.append(" [SQLSTATE ").append(((SQLException) e).getSQLState()).append("]");
        }
        for (Throwable c = e.getCause(); c != null; c = c.getCause()) {
            sb.append(" caused by ").append(c);
        }
        return sb.toString().replace('\n', ' ');
    }

    static void expect(boolean cond, String what) {
        if (!cond) {
            throw new AssertionError(what);
        }
    }

    static void expectEq(Object expected, Object actual, String what) {
        if (expected == null ? actual != null : !expected.equals(actual)) {
            throw new AssertionError(what + ": expected <" + expected + ">, got <" + actual + ">");
        }
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 1) {
            System.err.println("usage: java -cp postgresql.jar WeirJdbcCheck.java <port>");
            System.exit(2);
        }
        String url = "jdbc:postgresql://127.0.0.1:" + args[0] + "/weir?user=weir&connectTimeout=30&socketTimeout=60";
        Connection[] holder = new Connection[1];
        check("connect", () -> holder[0] = DriverManager.getConnection(url));
        Connection conn = holder[0];
        if (conn == null) {
            System.out.println("FAIL remaining checks: no connection");
            System.exit(1);
        }

        check("product_version", () -> {
            DatabaseMetaData md = conn.getMetaData();
            expectEq("PostgreSQL", md.getDatabaseProductName(), "getDatabaseProductName()");
            String v = md.getDatabaseProductVersion();
            expect(v != null && v.matches("\\d+(\\.\\d+)+.*"),
                "getDatabaseProductVersion() should look like a version, got <" + v + ">");
            expect(md.getDatabaseMajorVersion() >= 9,
                "getDatabaseMajorVersion() = " + md.getDatabaseMajorVersion());
        });

        check("get_tables", () -> {
            List<String> found = new ArrayList<>();
            try (ResultSet rs = conn.getMetaData().getTables(null, "public", "%", new String[] {"TABLE"})) {
                while (rs.next()) {
                    found.add(rs.getString("TABLE_SCHEM") + "." + rs.getString("TABLE_NAME")
                        + ":" + rs.getString("TABLE_TYPE"));
                }
            }
            expect(found.contains("public." + TABLE + ":TABLE"),
                "getTables(null, \"public\", \"%\", {\"TABLE\"}) should list public." + TABLE
                    + " as TABLE, got " + found);
        });

        check("get_schemas", () -> {
            List<String> found = new ArrayList<>();
            try (ResultSet rs = conn.getMetaData().getSchemas()) {
                while (rs.next()) {
                    found.add(rs.getString("TABLE_SCHEM"));
                }
            }
            expect(found.contains("public"), "getSchemas() should list public, got " + found);
        });

        check("get_columns", () -> {
            List<String> found = new ArrayList<>();
            try (ResultSet rs = conn.getMetaData().getColumns(null, "public", TABLE, "%")) {
                while (rs.next()) {
                    found.add(rs.getInt("ORDINAL_POSITION") + " " + rs.getString("COLUMN_NAME") + " "
                        + rs.getString("TYPE_NAME") + " " + rs.getInt("DATA_TYPE"));
                }
            }
            List<String> expected = List.of(
                "1 id int8 " + Types.BIGINT,
                "2 name text " + Types.VARCHAR,
                "3 price float8 " + Types.DOUBLE);
            expectEq(expected, found,
                "getColumns(null, \"public\", \"" + TABLE + "\", \"%\") as "
                    + "[ORDINAL_POSITION COLUMN_NAME TYPE_NAME DATA_TYPE]");
        });

        check("prepared_select", () -> {
            try (PreparedStatement ps = conn.prepareStatement(
                    "SELECT id, name, price FROM " + TABLE + " WHERE id > ? ORDER BY id")) {
                ps.setLong(1, 7L);
                List<String> rows = new ArrayList<>();
                try (ResultSet rs = ps.executeQuery()) {
                    while (rs.next()) {
                        rows.add(rs.getLong(1) + "|" + rs.getString(2) + "|" + rs.getDouble(3));
                    }
                }
                expectEq(List.of("8|item-8|12.0", "9|item-9|13.5", "10|item-10|15.0"), rows,
                    "rows with id > 7");
            }
        });

        // pgjdbc switches to a named server-side statement, and to binary
        // results for int8/float8, from the fifth execution on
        // (prepareThreshold=5); the answers must not change when it does.
        check("prepared_string_param", () -> {
            try (PreparedStatement ps = conn.prepareStatement(
                    "SELECT id FROM " + TABLE + " WHERE name = ?")) {
                ps.setString(1, "item-3");
                try (ResultSet rs = ps.executeQuery()) {
                    expect(rs.next(), "no row for name = 'item-3'");
                    expectEq(3L, rs.getLong(1), "id of item-3");
                    expect(!rs.next(), "more than one row for name = 'item-3'");
                }
            }
        });

        check("prepared_reuse", () -> {
            try (PreparedStatement ps = conn.prepareStatement(
                    "SELECT count(*), sum(price) FROM " + TABLE + " WHERE id > ?")) {
                for (long bound = 0; bound < 8; bound++) {
                    ps.setLong(1, bound);
                    try (ResultSet rs = ps.executeQuery()) {
                        expect(rs.next(), "no row for id > " + bound);
                        long n = 10 - bound;
                        expectEq(n, rs.getLong(1), "count(*) for id > " + bound);
                        double sum = 1.5 * (55 - bound * (bound + 1) / 2);
                        expectEq(sum, rs.getDouble(2), "sum(price) for id > " + bound);
                    }
                }
            }
        });

        check("getters", () -> {
            try (PreparedStatement ps = conn.prepareStatement(
                    "SELECT id, price, name, CAST('2024-01-02 03:04:05' AS TIMESTAMP) AS ts, "
                        + "id % 2 = 0 AS even, CAST(NULL AS BIGINT) AS missing "
                        + "FROM " + TABLE + " WHERE id = ?")) {
                ps.setLong(1, 4L);
                try (ResultSet rs = ps.executeQuery()) {
                    expect(rs.next(), "no row for id = 4");
                    expectEq(4L, rs.getLong("id"), "getLong(id)");
                    expectEq(6.0, rs.getDouble("price"), "getDouble(price)");
                    expectEq("item-4", rs.getString("name"), "getString(name)");
                    expectEq(Timestamp.valueOf("2024-01-02 03:04:05"), rs.getTimestamp("ts"), "getTimestamp(ts)");
                    expectEq(LocalDateTime.of(2024, 1, 2, 3, 4, 5), rs.getObject("ts", LocalDateTime.class),
                        "getObject(ts, LocalDateTime.class)");
                    expectEq(true, rs.getBoolean("even"), "getBoolean(even)");
                    expectEq(0L, rs.getLong("missing"), "getLong(missing)");
                    expect(rs.wasNull(), "wasNull() after reading a NULL");
                    expectEq(Long.class, rs.getObject("id").getClass(), "getObject(id) class");
                    expectEq(Double.class, rs.getObject("price").getClass(), "getObject(price) class");
                    expectEq(Boolean.class, rs.getObject("even").getClass(), "getObject(even) class");
                    expect(!rs.next(), "more than one row for id = 4");
                }
            }
        });

        check("result_metadata", () -> {
            try (Statement st = conn.createStatement();
                 ResultSet rs = st.executeQuery("SELECT id, name, price FROM " + TABLE + " LIMIT 1")) {
                var md = rs.getMetaData();
                expectEq(3, md.getColumnCount(), "getColumnCount()");
                expectEq("int8", md.getColumnTypeName(1), "getColumnTypeName(1)");
                expectEq("text", md.getColumnTypeName(2), "getColumnTypeName(2)");
                expectEq("float8", md.getColumnTypeName(3), "getColumnTypeName(3)");
                expectEq(Types.BIGINT, md.getColumnType(1), "getColumnType(1)");
                expectEq(Types.DOUBLE, md.getColumnType(3), "getColumnType(3)");
            }
        });

        check("missing_table_error", () -> {
            try (Statement st = conn.createStatement()) {
                st.executeQuery("SELECT * FROM no_such_table");
                throw new AssertionError("query over a missing table succeeded");
            } catch (SQLException e) {
                expectEq("42P01", e.getSQLState(), "SQLSTATE of " + e.getMessage());
            }
            // The session stays usable after an error.
            try (Statement st = conn.createStatement(); ResultSet rs = st.executeQuery("SELECT 1")) {
                expect(rs.next() && rs.getInt(1) == 1, "SELECT 1 after an error");
            }
        });

        conn.close();
        System.out.println(failures == 0 ? "all checks passed" : failures + " check(s) failed");
        System.exit(failures == 0 ? 0 : 1);
    }
}
