import io.debezium.engine.ChangeEvent;
import io.debezium.engine.DebeziumEngine;
import io.debezium.engine.Header;
import io.debezium.engine.format.Json;
import io.debezium.engine.format.KeyValueHeaderChangeEventFormat;

import java.io.FileOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.Properties;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;

/** Runs Debezium's MariaDB connector (embedded engine, JSON converter without schemas) and writes every
 *  record it produces as one JSON line {"topic", "key", "value", "headers"} (key/value raw JSON text, null
 *  for a tombstone's value) to the output file, until the file STOP appears next to it. */
public class Capture {
    public static void main(String[] args) throws Exception {
        String out = args[0];
        Properties p = new Properties();
        p.setProperty("name", "golden");
        p.setProperty("connector.class", "io.debezium.connector.mariadb.MariaDbConnector");
        p.setProperty("offset.storage", "org.apache.kafka.connect.storage.MemoryOffsetBackingStore");
        p.setProperty("offset.flush.interval.ms", "60000");
        p.setProperty("schema.history.internal", "io.debezium.relational.history.MemorySchemaHistory");
        p.setProperty("errors.max.retries", "0");
        p.setProperty("database.hostname", "127.0.0.1");
        p.setProperty("database.port", args[1]);
        p.setProperty("database.user", args[2]);
        p.setProperty("database.password", args[3]);
        p.setProperty("database.include.list", args[4]);
        p.setProperty("topic.prefix", args[5]);
        p.setProperty("database.server.id", "4242421");
        p.setProperty("snapshot.mode", "initial");
        p.setProperty("include.schema.changes", "false");
        p.setProperty("tombstones.on.delete", "true");
        p.setProperty("provide.transaction.metadata", "true");
        p.setProperty("decimal.handling.mode", "string");
        p.setProperty("converter.schemas.enable", "false");
        p.setProperty("key.converter.schemas.enable", "false");
        p.setProperty("value.converter.schemas.enable", "false");
        p.setProperty("header.converter.schemas.enable", "false");
        p.setProperty("poll.interval.ms", "100");
        PrintStream ps = new PrintStream(new FileOutputStream(out), true, StandardCharsets.UTF_8);
        DebeziumEngine<ChangeEvent<String, String>> engine = DebeziumEngine
                .create(KeyValueHeaderChangeEventFormat.of(Json.class, Json.class, Json.class))
                .using(p)
                .notifying(r -> {
                    StringBuilder sb = new StringBuilder();
                    sb.append("{\"topic\":\"").append(r.destination()).append("\",\"key\":")
                      .append(r.key() == null ? "null" : r.key()).append(",\"value\":")
                      .append(r.value() == null ? "null" : r.value()).append(",\"headers\":{");
                    boolean first = true;
                    for (Header<?> h : r.headers()) {
                        if (!first) sb.append(',');
                        first = false;
                        Object v = h.getValue();
                        sb.append('"').append(h.getKey()).append("\":").append(v == null ? "null" : v.toString());
                    }
                    sb.append("}}");
                    synchronized (ps) { ps.println(sb); }
                })
                .using((success, message, error) -> {
                    System.err.println("engine ended: success=" + success + " " + message + " " + error);
                    if (error != null) error.printStackTrace();
                })
                .build();
        ExecutorService exec = Executors.newSingleThreadExecutor();
        exec.execute(engine);
        java.io.File stop = new java.io.File(new java.io.File(out).getAbsoluteFile().getParentFile(), "STOP");
        while (!stop.exists()) Thread.sleep(200);
        engine.close();
        exec.shutdown();
        ps.close();
        System.exit(0);
    }
}
