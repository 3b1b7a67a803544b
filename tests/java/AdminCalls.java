// Kafka's own AdminClient (the reference implementation of the protocol) against a broker:
// each call prints one line, `name: result` or `name: FAILED <exception>`, and the test that
// runs this file (tests/python/test_java_clients.py) reads them. Run as a single-file
// program: java -cp "$SLUICE_KAFKA_LIB/*" AdminCalls.java BOOTSTRAP
import java.util.*;
import java.util.concurrent.Callable;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.serialization.StringSerializer;

public class AdminCalls {
    static void call(String name, Callable<Object> body) {
        try {
            System.out.println(name + ": " + body.call());
        } catch (Throwable e) {
            Throwable cause = e.getCause() != null ? e.getCause() : e;
            System.out.println(name + ": FAILED " + cause.getClass().getSimpleName() + " " + cause.getMessage());
        }
        System.out.flush();
    }

    public static void main(String[] args) throws Exception {
        String bootstrap = args[0];
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "20000");
        p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "10000");
        try (Admin admin = Admin.create(p)) {
            call("describeCluster", () -> {
                DescribeClusterResult r = admin.describeCluster();
                return "nodes=" + r.nodes().get().size() + " controller=" + r.controller().get().id()
                        + " clusterId=" + (r.clusterId().get() != null);
            });
            call("createTopics", () -> {
                admin.createTopics(List.of(new NewTopic("admin-a", 3, (short) 1),
                        new NewTopic("admin-b", Optional.empty(), Optional.empty())
                                .configs(Map.of("cleanup.policy", "compact")))).all().get();
                return "created";
            });
            call("createTopicsAgain", () -> {
                admin.createTopics(List.of(new NewTopic("admin-a", 3, (short) 1))).all().get();
                return "created twice";
            });
            call("listTopics", () -> new TreeSet<>(admin.listTopics().names().get()));
            call("describeTopics", () -> {
                TopicDescription d = admin.describeTopics(List.of("admin-a")).allTopicNames().get().get("admin-a");
                return "partitions=" + d.partitions().size() + " leader=" + d.partitions().get(0).leader().id();
            });
            call("describeConfigs", () -> {
                ConfigResource t = new ConfigResource(ConfigResource.Type.TOPIC, "admin-b");
                Config c = admin.describeConfigs(List.of(t)).all().get().get(t);
                return "cleanup.policy=" + c.get("cleanup.policy").value();
            });
            // Recent timestamps: records older than a topic's retention (7 days by default) may
            // be deleted by the broker at any moment, on Kafka as on Sluice.
            final long base = System.currentTimeMillis() - 120_000L;
            try (Producer<String, String> producer = new KafkaProducer<>(Map.of(
                    ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap,
                    ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName(),
                    ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName()))) {
                for (int i = 0; i < 30; i++) {
                    producer.send(new ProducerRecord<>("admin-a", i % 3, base + i * 1000L, "k" + i, "v" + i)).get();
                }
            }
            TopicPartition a0 = new TopicPartition("admin-a", 0);
            call("listOffsets", () -> {
                long earliest = admin.listOffsets(Map.of(a0, OffsetSpec.earliest())).all().get().get(a0).offset();
                long latest = admin.listOffsets(Map.of(a0, OffsetSpec.latest())).all().get().get(a0).offset();
                long byTime = admin.listOffsets(Map.of(a0, OffsetSpec.forTimestamp(base + 4_500L))).all().get().get(a0).offset();
                return "earliest=" + earliest + " latest=" + latest + " forTimestamp=" + byTime;
            });
            TopicPartition a1 = new TopicPartition("admin-a", 1);
            call("alterConsumerGroupOffsets", () -> {
                admin.alterConsumerGroupOffsets("admin-g", Map.of(
                        a0, new OffsetAndMetadata(7, "set by admin"), a1, new OffsetAndMetadata(3))).all().get();
                return "altered";
            });
            call("listConsumerGroupOffsets", () -> {
                OffsetAndMetadata o = admin.listConsumerGroupOffsets("admin-g").partitionsToOffsetAndMetadata().get().get(a0);
                return "offset=" + o.offset() + " metadata=" + o.metadata();
            });
            call("listConsumerGroups", () -> {
                TreeSet<String> ids = new TreeSet<>();
                for (GroupListing g : admin.listGroups().all().get()) ids.add(g.groupId());
                return ids;
            });
            call("describeConsumerGroups", () -> {
                ConsumerGroupDescription d = admin.describeConsumerGroups(List.of("admin-g")).all().get().get("admin-g");
                return "state=" + d.groupState() + " members=" + d.members().size();
            });
            call("deleteConsumerGroupOffsets", () -> {
                admin.deleteConsumerGroupOffsets("admin-g", Set.of(a0)).all().get();
                Map<TopicPartition, OffsetAndMetadata> left = admin.listConsumerGroupOffsets("admin-g").partitionsToOffsetAndMetadata().get();
                return "left=" + new TreeSet<>(left.keySet().stream().map(TopicPartition::toString).toList());
            });
            call("deleteConsumerGroups", () -> {
                admin.deleteConsumerGroups(List.of("admin-g")).all().get();
                TreeSet<String> ids = new TreeSet<>();
                for (GroupListing g : admin.listGroups().all().get()) ids.add(g.groupId());
                return "remaining=" + ids;
            });
            call("deleteUnknownGroup", () -> {
                admin.deleteConsumerGroups(List.of("no-such-group")).all().get();
                return "deleted";
            });
            call("shrinkPartitions", () -> {
                admin.createPartitions(Map.of("admin-a", NewPartitions.increaseTo(2))).all().get();
                return "shrunk";
            });
            call("createPartitions", () -> {
                admin.createPartitions(Map.of("admin-a", NewPartitions.increaseTo(5))).all().get();
                return "partitions=" + admin.describeTopics(List.of("admin-a")).allTopicNames().get().get("admin-a").partitions().size();
            });
            call("incrementalAlterConfigs", () -> {
                ConfigResource t = new ConfigResource(ConfigResource.Type.TOPIC, "admin-a");
                admin.incrementalAlterConfigs(Map.of(t, List.of(new AlterConfigOp(
                        new ConfigEntry("retention.ms", "3600000"), AlterConfigOp.OpType.SET)))).all().get();
                return "retention.ms=" + admin.describeConfigs(List.of(t)).all().get().get(t).get("retention.ms").value();
            });
            call("incrementalAlterUnknownConfig", () -> {
                ConfigResource t = new ConfigResource(ConfigResource.Type.TOPIC, "admin-a");
                admin.incrementalAlterConfigs(Map.of(t, List.of(new AlterConfigOp(
                        new ConfigEntry("retention.msec", "1"), AlterConfigOp.OpType.SET)))).all().get();
                return "altered";
            });
            call("deleteRecords", () -> {
                admin.deleteRecords(Map.of(a0, RecordsToDelete.beforeOffset(4))).all().get();
                return "lowWatermark=" + admin.listOffsets(Map.of(a0, OffsetSpec.earliest())).all().get().get(a0).offset();
            });
            call("transactionalProducer", () -> {
                try (Producer<String, String> producer = new KafkaProducer<>(Map.of(
                        ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap,
                        ProducerConfig.TRANSACTIONAL_ID_CONFIG, "admin-txn",
                        ProducerConfig.MAX_BLOCK_MS_CONFIG, "15000",
                        ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName(),
                        ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName()))) {
                    producer.initTransactions();
                    return "initialized";
                }
            });
            call("deleteTopics", () -> {
                admin.deleteTopics(List.of("admin-b")).all().get();
                return "remaining=" + new TreeSet<>(admin.listTopics().names().get());
            });
        }
    }
}
