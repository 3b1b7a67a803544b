// kafkajs 2.2.4 against sluice broker: an idempotent producer (gzip) and a consumer group.
// Usage: node kafkajs_roundtrip.js HOST:PORT TOPIC COUNT. Prints "OK <n>" on success.
const { Kafka, CompressionTypes, logLevel } = require("kafkajs");

async function main() {
  const [broker, topic, countArg] = process.argv.slice(2);
  const count = Number(countArg);
  const kafka = new Kafka({ clientId: "kafkajs-test", brokers: [broker], logLevel: logLevel.WARN });
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: 3 }] });
  await admin.disconnect();

  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const messages = [];
  for (let i = 0; i < count; i++) messages.push({ key: `k${i % 7}`, value: `js-${i}` });
  for (let i = 0; i < messages.length; i += 100) {
    await producer.send({ topic, compression: CompressionTypes.GZIP, messages: messages.slice(i, i + 100) });
  }
  await producer.disconnect();

  const consumer = kafka.consumer({ groupId: `${topic}-group`, maxWaitTimeInMs: 200 });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const seen = new Set();
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out with ${seen.size}/${count}`)), 30000);
    consumer.run({
      eachMessage: async ({ message }) => {
        seen.add(message.value.toString());
        if (seen.size === count) { clearTimeout(timer); resolve(); }
      },
    }).catch(reject);
  });
  await consumer.disconnect();
  console.log(`OK ${seen.size}`);
}

main().catch((e) => { console.error(e); process.exit(1); });
