// A Kafka application nobody here wrote, in Go: Shopify's sarama (Debian's
// golang-github-shopify-sarama-dev, built offline in GOPATH mode). The same command line and
// JSON lines as ../py_client.py:
//
//	sarama-client produce --bootstrap B --topic T --records FILE [--compression C] [--idempotent]
//	sarama-client consume --bootstrap B --topic T --expect N [--timeout S]   (no group: see consume)
//	sarama-client consume-group --bootstrap B --topic T --group G [--timeout S]
package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/Shopify/sarama"
)

type record struct {
	Key       *string      `json:"key"`
	Value     *string      `json:"value"`
	Headers   [][2]*string `json:"headers"`
	Partition *int32       `json:"partition"`
}

func unhex(s *string) []byte {
	if s == nil {
		return nil
	}
	b, err := hex.DecodeString(*s)
	if err != nil {
		panic(err)
	}
	return b
}

func tohex(b []byte) interface{} {
	if b == nil {
		return nil
	}
	return hex.EncodeToString(b)
}

func emit(v interface{}) {
	out, _ := json.Marshal(v)
	fmt.Println(string(out))
}

func config() *sarama.Config {
	c := sarama.NewConfig()
	// Record batches v2 (headers, idempotence) need 0.11+; 2.1 is this sarama's newest tested.
	c.Version = sarama.V2_1_0_0
	return c
}

func produce(bootstrap, topic, file, compression string, idempotent bool) {
	c := config()
	c.Producer.Return.Successes = true
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Producer.Partitioner = sarama.NewManualPartitioner
	c.Producer.Timeout = 20 * time.Second
	if idempotent {
		c.Producer.Idempotent = true
		c.Net.MaxOpenRequests = 1
		c.Producer.Retry.Max = 3
	}
	codecs := map[string]sarama.CompressionCodec{"none": sarama.CompressionNone, "gzip": sarama.CompressionGZIP,
		"snappy": sarama.CompressionSnappy, "lz4": sarama.CompressionLZ4, "zstd": sarama.CompressionZSTD}
	c.Producer.Compression = codecs[compression]
	producer, err := sarama.NewSyncProducer(strings.Split(bootstrap, ","), c)
	if err != nil {
		emit(map[string]string{"error": err.Error()})
		return
	}
	defer producer.Close()
	f, err := os.Open(file)
	if err != nil {
		panic(err)
	}
	defer f.Close()
	scanner := bufio.NewScanner(f)
	scanner.Buffer(make([]byte, 1<<20), 1<<24)
	for scanner.Scan() {
		if strings.TrimSpace(scanner.Text()) == "" {
			continue
		}
		var r record
		if err := json.Unmarshal(scanner.Bytes(), &r); err != nil {
			panic(err)
		}
		msg := &sarama.ProducerMessage{Topic: topic}
		if r.Key != nil {
			msg.Key = sarama.ByteEncoder(unhex(r.Key))
		}
		if r.Value != nil {
			msg.Value = sarama.ByteEncoder(unhex(r.Value))
		}
		if r.Partition != nil {
			msg.Partition = *r.Partition
		}
		for _, h := range r.Headers {
			msg.Headers = append(msg.Headers, sarama.RecordHeader{Key: []byte(*h[0]), Value: unhex(h[1])})
		}
		partition, offset, err := producer.SendMessage(msg)
		if err != nil {
			emit(map[string]string{"error": err.Error()})
		} else {
			emit(map[string]interface{}{"partition": partition, "offset": offset})
		}
	}
}

// Partition consumers of every partition, from the oldest offset, without committing: on the
// test bed's broker sarama 1.22 can neither join a group (MEMBER_ID_REQUIRED, KIP-394, which
// it predates) nor commit outside one (UNKNOWN_MEMBER_ID); consume-group shows it, also
// without the proxy (docs/testbed.md).
func consume(bootstrap, topic string, expect int, timeout time.Duration) {
	c := config()
	c.Consumer.Return.Errors = true
	consumer, err := sarama.NewConsumer(strings.Split(bootstrap, ","), c)
	if err != nil {
		emit(map[string]string{"error": err.Error()})
		return
	}
	defer consumer.Close()
	partitions, err := consumer.Partitions(topic)
	if err != nil {
		emit(map[string]string{"error": err.Error()})
		return
	}
	messages := make(chan *sarama.ConsumerMessage)
	errs := make(chan *sarama.ConsumerError, len(partitions))
	for _, p := range partitions {
		pc, err := consumer.ConsumePartition(topic, p, sarama.OffsetOldest)
		if err != nil {
			emit(map[string]interface{}{"error": err.Error(), "partition": p})
			return
		}
		defer pc.Close()
		go func(pc sarama.PartitionConsumer) {
			for m := range pc.Messages() {
				messages <- m
			}
		}(pc)
		go func(pc sarama.PartitionConsumer) {
			for e := range pc.Errors() {
				errs <- e
			}
		}(pc)
	}
	deadline := time.After(timeout)
	for got := 0; got < expect; got++ {
		select {
		case m := <-messages:
			emitMessage(m)
		case e := <-errs:
			emit(map[string]interface{}{"error": e.Err.Error(), "partition": e.Partition})
			return
		case <-deadline:
			return
		}
	}
}

func emitMessage(m *sarama.ConsumerMessage) {
	headers := [][]interface{}{}
	for _, rh := range m.Headers {
		headers = append(headers, []interface{}{string(rh.Key), tohex(rh.Value)})
	}
	emit(map[string]interface{}{"partition": m.Partition, "offset": m.Offset, "key": tohex(m.Key),
		"value": tohex(m.Value), "headers": headers})
}

type handler struct{ seen chan struct{} }

func (h handler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (h handler) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (h handler) ConsumeClaim(s sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for m := range claim.Messages() {
		emitMessage(m)
		s.MarkMessage(m, "")
		h.seen <- struct{}{}
	}
	return nil
}

// A consumer-group member: the first error (or the first record) ends it.
func consumeGroup(bootstrap, topic, group string, timeout time.Duration) {
	c := config()
	c.Consumer.Offsets.Initial = sarama.OffsetOldest
	c.Consumer.Return.Errors = true
	cg, err := sarama.NewConsumerGroup(strings.Split(bootstrap, ","), group, c)
	if err != nil {
		emit(map[string]string{"error": err.Error()})
		return
	}
	defer cg.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	h := handler{seen: make(chan struct{}, 1)}
	go func() {
		if err := cg.Consume(ctx, []string{topic}, h); err != nil {
			emit(map[string]string{"error": err.Error()})
		}
		cancel()
	}()
	select {
	case <-h.seen:
	case <-ctx.Done():
	}
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: sarama-client produce|consume ...")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	bootstrap := fs.String("bootstrap", "", "")
	topic := fs.String("topic", "", "")
	records := fs.String("records", "", "")
	compression := fs.String("compression", "none", "")
	idempotent := fs.Bool("idempotent", false, "")
	group := fs.String("group", "", "")
	expect := fs.Int("expect", 0, "")
	timeout := fs.Float64("timeout", 30, "")
	fs.Parse(os.Args[2:])
	switch os.Args[1] {
	case "produce":
		produce(*bootstrap, *topic, *records, *compression, *idempotent)
	case "consume":
		consume(*bootstrap, *topic, *expect, time.Duration(*timeout*float64(time.Second)))
	case "consume-group":
		consumeGroup(*bootstrap, *topic, *group, time.Duration(*timeout*float64(time.Second)))
	default:
		fmt.Fprintln(os.Stderr, "unknown command", os.Args[1])
		os.Exit(2)
	}
}
