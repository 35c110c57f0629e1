#!/usr/bin/env python3
"""A Kafka application nobody here wrote: produce or consume with a stock Python client
library, through whatever bootstrap address it is given (the kafka-e2ee proxy, in the tests).

    py_client.py --lib kafka-python|confluent-kafka produce --bootstrap B --topic T --records FILE
        [--compression none|gzip|snappy|lz4|zstd] [--idempotent]
    py_client.py --lib ... consume --bootstrap B --topic T --group G --expect N [--timeout S]

Records are JSON (one object per line): {"key": hex|null, "value": hex|null,
"headers": [[name, hex|null], ...], "partition": int|null}. `produce` prints one line per
record with the partition and offset the broker acknowledged, or {"error": ...}; `consume`
prints the records it got (with partition and offset) and commits, or stops at the first error
({"error": ..., "partition": p} when the client says which partition).
"""

import argparse
import json
import sys
import time


def unhex(v):
    return None if v is None else bytes.fromhex(v)


def tohex(v):
    return None if v is None else bytes(v).hex()


def emit(obj):
    print(json.dumps(obj), flush=True)


# ---- kafka-python (pure Python) ----

def kp_produce(args, records):
    from kafka import KafkaProducer
    producer = KafkaProducer(
        bootstrap_servers=args.bootstrap,
        compression_type=None if args.compression == "none" else args.compression,
        enable_idempotence=args.idempotent,
        acks="all",
        retries=3,
        request_timeout_ms=20000,
    )
    futures = []
    for r in records:
        headers = [(k, unhex(v)) for k, v in r.get("headers", [])]
        futures.append(producer.send(args.topic, value=unhex(r["value"]), key=unhex(r["key"]),
                                     headers=headers, partition=r.get("partition")))
    producer.flush(timeout=30)
    for f in futures:
        try:
            md = f.get(timeout=30)
            emit({"partition": md.partition, "offset": md.offset})
        except Exception as e:  # noqa: BLE001 - the test reads the error text
            emit({"error": f"{type(e).__name__}: {e}"})
    producer.close(timeout=5)


def kp_consume(args):
    from kafka import KafkaConsumer
    consumer = KafkaConsumer(
        bootstrap_servers=args.bootstrap,
        group_id=args.group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=int(args.timeout * 1000),
        # The test bed's broker holds each group join about half the session timeout.
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )
    consumer.subscribe([args.topic])
    got = 0
    deadline = time.time() + args.timeout
    try:
        while got < args.expect and time.time() < deadline:
            batches = consumer.poll(timeout_ms=1000)
            for tp, msgs in batches.items():
                for m in msgs:
                    emit({"partition": m.partition, "offset": m.offset, "key": tohex(m.key),
                          "value": tohex(m.value), "headers": [[k, tohex(v)] for k, v in (m.headers or [])]})
                    got += 1
            consumer.commit()
    except Exception as e:  # noqa: BLE001
        emit({"error": f"{type(e).__name__}: {e}"})
    consumer.close()


# ---- confluent-kafka (librdkafka) ----

def ck_produce(args, records):
    from confluent_kafka import Producer
    producer = Producer({
        "bootstrap.servers": args.bootstrap,
        "compression.type": args.compression,
        "enable.idempotence": args.idempotent,
        "acks": "all",
        "message.timeout.ms": 30000,
    })
    results = [None] * len(records)

    def report(i):
        def cb(err, msg):
            results[i] = {"error": str(err)} if err else {"partition": msg.partition(), "offset": msg.offset()}
        return cb

    for i, r in enumerate(records):
        kwargs = {"value": unhex(r["value"]), "key": unhex(r["key"]),
                  "headers": [(k, unhex(v)) for k, v in r.get("headers", [])], "on_delivery": report(i)}
        if r.get("partition") is not None:
            kwargs["partition"] = r["partition"]
        producer.produce(args.topic, **kwargs)
        producer.poll(0)
    producer.flush(60)
    for res in results:
        emit(res or {"error": "no delivery report"})


def ck_consume(args):
    from confluent_kafka import Consumer
    consumer = Consumer({
        "bootstrap.servers": args.bootstrap,
        "group.id": args.group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 1000,
    })
    consumer.subscribe([args.topic])
    got = 0
    deadline = time.time() + args.timeout
    while got < args.expect and time.time() < deadline:
        m = consumer.poll(1.0)
        if m is None:
            continue
        if m.error():
            emit({"error": str(m.error()), "partition": m.partition()})
            break
        emit({"partition": m.partition(), "offset": m.offset(), "key": tohex(m.key()),
              "value": tohex(m.value()), "headers": [[k, tohex(v)] for k, v in (m.headers() or [])]})
        got += 1
        consumer.commit(message=m, asynchronous=False)
    consumer.close()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--lib", required=True, choices=["kafka-python", "confluent-kafka"])
    sub = p.add_subparsers(dest="cmd", required=True)
    prod = sub.add_parser("produce")
    prod.add_argument("--bootstrap", required=True)
    prod.add_argument("--topic", required=True)
    prod.add_argument("--records", required=True)
    prod.add_argument("--compression", default="none", choices=["none", "gzip", "snappy", "lz4", "zstd"])
    prod.add_argument("--idempotent", action="store_true")
    cons = sub.add_parser("consume")
    cons.add_argument("--bootstrap", required=True)
    cons.add_argument("--topic", required=True)
    cons.add_argument("--group", required=True)
    cons.add_argument("--expect", type=int, required=True)
    cons.add_argument("--timeout", type=float, default=30.0)
    args = p.parse_args()
    if args.cmd == "produce":
        with open(args.records) as f:
            records = [json.loads(line) for line in f if line.strip()]
        (kp_produce if args.lib == "kafka-python" else ck_produce)(args, records)
    else:
        (kp_consume if args.lib == "kafka-python" else ck_consume)(args)


if __name__ == "__main__":
    sys.exit(main())
