// Debezium's Postgres connector in its embedded engine, counting the change events it
// hands over as JSON (schemas off, as Sluice's `value_format: json`), for
// `sluice bench postgres-cdc --debezium`. No Kafka broker: what is measured is Debezium's
// capture and conversion, which is all the work Sluice's figures include but the log.
//
//   java DebeziumBench <host> <port> <user> <dbname> <table> <offsets file> <events> <snapshot_mode>
//
// Prints `done <seconds> <seconds since the first event>` once <events> events arrived
// (seconds from the engine's start, and without the JVM's and the engine's start-up), then
// stops the engine, which stores its offsets in <offsets file> for the next run.

import io.debezium.engine.ChangeEvent;
import io.debezium.engine.DebeziumEngine;
import io.debezium.engine.format.Json;

import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

public class DebeziumBench {
    public static void main(String[] args) throws Exception {
        Properties p = new Properties();
        p.setProperty("name", "sluice-bench");
        p.setProperty("connector.class", "io.debezium.connector.postgresql.PostgresConnector");
        p.setProperty("offset.storage", "org.apache.kafka.connect.storage.FileOffsetBackingStore");
        p.setProperty("offset.storage.file.filename", args[5]);
        p.setProperty("offset.flush.interval.ms", "1000");
        p.setProperty("database.hostname", args[0]);
        p.setProperty("database.port", args[1]);
        p.setProperty("database.user", args[2]);
        p.setProperty("database.password", "");
        p.setProperty("database.dbname", args[3]);
        p.setProperty("topic.prefix", "dbz");
        p.setProperty("plugin.name", "pgoutput");
        p.setProperty("slot.name", "dbz_bench");
        p.setProperty("publication.name", "dbz_bench");
        p.setProperty("publication.autocreate.mode", "filtered");
        p.setProperty("table.include.list", args[4]);
        p.setProperty("snapshot.mode", args[7]);
        p.setProperty("converter.schemas.enable", "false");
        long wanted = Long.parseLong(args[6]);
        AtomicLong seen = new AtomicLong();
        AtomicLong first = new AtomicLong();
        CountDownLatch done = new CountDownLatch(1);
        long started = System.nanoTime();
        DebeziumEngine<ChangeEvent<String, String>> engine = DebeziumEngine.create(Json.class)
                .using(p)
                .notifying(event -> {
                    // Tombstones and heartbeats aside, as Sluice's figures count events.
                    if (event.value() == null) {
                        return;
                    }
                    first.compareAndSet(0, System.nanoTime());
                    if (seen.incrementAndGet() == wanted) {
                        done.countDown();
                    }
                })
                .using((success, message, error) -> {
                    if (!success) {
                        System.err.println("engine stopped: " + message + (error != null ? ": " + error : ""));
                        done.countDown();
                    }
                })
                .build();
        ExecutorService executor = Executors.newSingleThreadExecutor();
        executor.execute(engine);
        done.await();
        long now = System.nanoTime();
        double seconds = (now - started) / 1e9;
        double since = (now - (first.get() == 0 ? started : first.get())) / 1e9;
        System.out.println((seen.get() >= wanted ? "done " : "failed ") + seconds + " " + since);
        System.out.flush();
        engine.close();
        executor.shutdown();
        executor.awaitTermination(60, TimeUnit.SECONDS);
        System.exit(0);
    }
}
