"""The stock Kafka client (PyPI confluent-kafka, librdkafka; pinned in scripts/test) on the
other side of Shoal's Kafka channel and outgoing connection (tests/tests/kafka.rs):

    stock.py create BOOTSTRAP TOPIC PARTITIONS
    stock.py produce BOOTSTRAP TOPIC FIRST COUNT LOG [nofail] [slow=SECONDS]
    stock.py consume BOOTSTRAP TOPIC COUNT SECONDS      # JSON lines: key, value, headers, ...
    stock.py committed BOOTSTRAP GROUP TOPIC             # {"committed": n, "end": n}
"""

import json
import sys
import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def create(boot, topic, partitions):
    admin = AdminClient({'bootstrap.servers': boot})
    for _, f in admin.create_topics([NewTopic(topic, num_partitions=int(partitions),
                                              replication_factor=1)]).items():
        f.result(20)
    print('created', topic)


def produce(boot, topic, first, count, log, *flags):
    p = Producer({'bootstrap.servers': boot, 'enable.idempotence': True, 'acks': 'all',
                  'linger.ms': 5})
    fail = 'nofail' not in flags
    slow = [float(f[5:]) for f in flags if f.startswith('slow=')]
    for n in range(int(first), int(first) + int(count)):
        rec = {'n': n, 'log': log, 'fail': fail}
        if slow:
            rec['slow'] = slow[0]
        value = json.dumps(rec).encode()
        p.produce(topic, key='k{}'.format(n % 7), value=value, headers=[('source', b'test')])
        p.poll(0)
    left = p.flush(30)
    assert left == 0, '{} records not acknowledged'.format(left)
    print('produced', count)


def consume(boot, topic, count, seconds):
    c = Consumer({'bootstrap.servers': boot, 'group.id': 'stock-' + uuid.uuid4().hex,
                  'auto.offset.reset': 'earliest', 'enable.auto.commit': False})
    c.subscribe([topic])
    got, end = 0, time.time() + float(seconds)
    while got < int(count) and time.time() < end:
        m = c.poll(1)
        if m is None or m.error():
            continue
        got += 1
        print(json.dumps({
            'key': m.key().decode() if m.key() is not None else None,
            'value': m.value().decode(errors='replace'),
            'headers': {k: v.decode(errors='replace') for k, v in (m.headers() or [])},
            'partition': m.partition(), 'offset': m.offset()}), flush=True)
    c.close()


def committed(boot, group, topic):
    c = Consumer({'bootstrap.servers': boot, 'group.id': group, 'enable.auto.commit': False})
    md = c.list_topics(topic, timeout=10).topics[topic]
    parts = [TopicPartition(topic, p) for p in md.partitions]
    done = c.committed(parts, timeout=10)
    total_committed = sum(max(tp.offset, 0) for tp in done)
    total_end = sum(c.get_watermark_offsets(tp, timeout=10)[1] for tp in parts)
    c.close()
    print(json.dumps({'committed': total_committed, 'end': total_end}))


if __name__ == '__main__':
    {'create': create, 'produce': produce, 'consume': consume,
     'committed': committed}[sys.argv[1]](*sys.argv[2:])
