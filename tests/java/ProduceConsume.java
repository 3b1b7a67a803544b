// Kafka's own Java producer (idempotent, acks=all: the 4.x defaults) and two classic-protocol
// consumers in one group against a broker. Prints `name: result` lines that
// tests/python/test_java_clients.py checks. Run as a single-file program:
//   java -cp "$SLUICE_KAFKA_LIB/*" ProduceConsume.java BOOTSTRAP TOPIC RECORDS
import java.time.Duration;
import java.util.*;
import java.util.concurrent.*;
import java.util.concurrent.atomic.AtomicInteger;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.*;

public class ProduceConsume {
    public static void main(String[] args) throws Exception {
        String bootstrap = args[0], topic = args[1];
        int records = Integer.parseInt(args[2]);
        try (Admin admin = Admin.create(Map.of(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap))) {
            admin.createTopics(List.of(new NewTopic(topic, 4, (short) 1))).all().get();
        }
        Properties pp = new Properties();
        pp.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        pp.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        pp.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        // The 4.x defaults, said out loud: a broker without InitProducerId fails this producer.
        pp.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        pp.put(ProducerConfig.ACKS_CONFIG, "all");
        AtomicInteger failed = new AtomicInteger();
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(pp)) {
            for (int i = 0; i < records; i++) {
                producer.send(new ProducerRecord<>(topic, "key-" + (i % 50), Integer.toString(i)),
                        (md, e) -> { if (e != null) failed.incrementAndGet(); });
            }
            producer.flush();
            System.out.println("produced: " + records + " failed=" + failed.get());
        }
        ConcurrentHashMap<String, List<Integer>> byKey = new ConcurrentHashMap<>();
        Map<String, Integer> perConsumer = new ConcurrentHashMap<>();
        Map<String, List<String>> assignments = new ConcurrentHashMap<>();
        AtomicInteger total = new AtomicInteger();
        CountDownLatch done = new CountDownLatch(2);
        ExecutorService pool = Executors.newFixedThreadPool(2);
        for (String name : List.of("a", "b")) {
            pool.submit(() -> {
                Properties cp = new Properties();
                cp.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
                cp.put(ConsumerConfig.GROUP_ID_CONFIG, "java-group");
                cp.put(ConsumerConfig.CLIENT_ID_CONFIG, "java-" + name);
                cp.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
                cp.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
                cp.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
                cp.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
                try (KafkaConsumer<String, String> c = new KafkaConsumer<>(cp)) {
                    c.subscribe(List.of(topic), new ConsumerRebalanceListener() {
                        public void onPartitionsRevoked(Collection<TopicPartition> p) {}
                        public void onPartitionsAssigned(Collection<TopicPartition> p) {
                            assignments.computeIfAbsent(name, k -> Collections.synchronizedList(new ArrayList<>()))
                                    .add(p.stream().map(tp -> Integer.toString(tp.partition())).sorted().toList().toString());
                        }
                    });
                    long quietUntil = Long.MAX_VALUE;
                    long deadline = System.currentTimeMillis() + 60_000;
                    while (System.currentTimeMillis() < Math.min(quietUntil, deadline)) {
                        ConsumerRecords<String, String> got = c.poll(Duration.ofMillis(200));
                        for (ConsumerRecord<String, String> r : got) {
                            byKey.computeIfAbsent(r.key(), k -> Collections.synchronizedList(new ArrayList<>()))
                                    .add(Integer.parseInt(r.value()));
                            perConsumer.merge(name, 1, Integer::sum);
                            total.incrementAndGet();
                        }
                        if (!got.isEmpty()) c.commitSync();
                        if (total.get() >= records && quietUntil == Long.MAX_VALUE) {
                            quietUntil = System.currentTimeMillis() + 1500;
                        }
                    }
                } catch (Exception e) {
                    System.out.println("consumer " + name + ": FAILED " + e);
                } finally {
                    done.countDown();
                }
            });
        }
        done.await();
        pool.shutdown();
        boolean ordered = byKey.values().stream().allMatch(l -> {
            List<Integer> copy = new ArrayList<>(l);
            for (int i = 1; i < copy.size(); i++) if (copy.get(i - 1) >= copy.get(i)) return false;
            return true;
        });
        System.out.println("consumed: total=" + total.get() + " keys=" + byKey.size() + " orderedPerKey=" + ordered
                + " a=" + (perConsumer.getOrDefault("a", 0) > 0) + " b=" + (perConsumer.getOrDefault("b", 0) > 0));
        System.out.println("assignments: a=" + assignments.get("a") + " b=" + assignments.get("b"));
        try (Admin admin = Admin.create(Map.of(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap))) {
            long committed = admin.listConsumerGroupOffsets("java-group").partitionsToOffsetAndMetadata().get()
                    .values().stream().mapToLong(OffsetAndMetadata::offset).sum();
            System.out.println("committed: " + committed);
        }
    }
}
