#!/usr/bin/env node
// A Kafka application nobody here wrote, in JavaScript: kafkajs (npm), with kafkajs-snappy for
// snappy (gzip is built in). The same command line and JSON lines as py_client.py:
//
//   kafkajs_client.js produce --bootstrap B --topic T --records FILE [--compression C] [--idempotent]
//   kafkajs_client.js consume --bootstrap B --topic T --group G --expect N [--timeout S]
'use strict';
const fs = require('fs');
const { Kafka, CompressionTypes, CompressionCodecs, logLevel } = require('kafkajs');
CompressionCodecs[CompressionTypes.Snappy] = require('kafkajs-snappy');

function args() {
  const [cmd, ...rest] = process.argv.slice(2);
  const out = { cmd, compression: 'none', idempotent: false, timeout: 30 };
  for (let i = 0; i < rest.length; i++) {
    const name = rest[i].replace(/^--/, '');
    if (name === 'idempotent') out.idempotent = true;
    else out[name] = rest[++i];
  }
  return out;
}

const unhex = (v) => (v === null || v === undefined ? null : Buffer.from(v, 'hex'));
const tohex = (v) => (v === null || v === undefined ? null : Buffer.from(v).toString('hex'));
const emit = (o) => process.stdout.write(JSON.stringify(o) + '\n');

async function produce(a, kafka) {
  const codecs = { none: CompressionTypes.None, gzip: CompressionTypes.GZIP, snappy: CompressionTypes.Snappy };
  if (!(a.compression in codecs)) throw new Error(`codec ${a.compression} is not set up for kafkajs here`);
  const producer = kafka.producer({ idempotent: a.idempotent, maxInFlightRequests: a.idempotent ? 1 : undefined });
  await producer.connect();
  const lines = fs.readFileSync(a.records, 'utf8').split('\n').filter((l) => l.trim());
  for (const line of lines) {
    const r = JSON.parse(line);
    // kafkajs headers are an object: one value per name (the last wins).
    const headers = {};
    for (const [k, v] of r.headers || []) headers[k] = unhex(v) ?? Buffer.alloc(0);
    try {
      const [meta] = await producer.send({
        topic: a.topic,
        acks: -1,
        compression: codecs[a.compression],
        messages: [{ key: unhex(r.key), value: unhex(r.value), headers, partition: r.partition ?? undefined }],
      });
      emit({ partition: meta.partition, offset: Number(meta.baseOffset) });
    } catch (e) {
      emit({ error: `${e.name}: ${e.message}` });
    }
  }
  await producer.disconnect();
}

async function consume(a, kafka) {
  // The test bed's broker holds each group join about half the session timeout.
  const consumer = kafka.consumer({ groupId: a.group, sessionTimeout: 6000, heartbeatInterval: 1000 });
  await consumer.connect();
  await consumer.subscribe({ topic: a.topic, fromBeginning: true });
  let got = 0;
  const expect = Number(a.expect);
  await new Promise((resolve) => {
    const timer = setTimeout(resolve, Number(a.timeout) * 1000);
    consumer.on(consumer.events.CRASH, (e) => {
      emit({ error: `${e.payload.error.name}: ${e.payload.error.message}` });
      clearTimeout(timer);
      resolve();
    });
    consumer.run({
      autoCommit: true,
      eachMessage: async ({ partition, message }) => {
        const headers = Object.entries(message.headers || {}).map(([k, v]) => [k, tohex(v)]);
        emit({ partition, offset: Number(message.offset), key: tohex(message.key), value: tohex(message.value), headers });
        if (++got >= expect) {
          clearTimeout(timer);
          resolve();
        }
      },
    }).catch((e) => {
      emit({ error: `${e.name}: ${e.message}` });
      resolve();
    });
  });
  await consumer.disconnect();
}

(async () => {
  const a = args();
  // Retries bounded so a refusal ends the run; errors surface in the JSON, logs stay quiet.
  const kafka = new Kafka({ brokers: a.bootstrap.split(','), logLevel: logLevel.NOTHING,
    retry: { retries: 2, initialRetryTime: 200 } });
  if (a.cmd === 'produce') await produce(a, kafka);
  else if (a.cmd === 'consume') await consume(a, kafka);
  else throw new Error(`unknown command ${a.cmd}`);
})().catch((e) => {
  emit({ error: `${e.name}: ${e.message}` });
  process.exit(0);
});
