"""KVDB round trips from a service: `n` SETs then `n` GETs of a 100-byte value through
self.kvdb.conn (service -> Rust -> gRPC -> KVDB proxy -> Redis), timed inside the service."""

import time

from shoal import Service


class KVBench(Service):
    name = 'bench.kvdb'

    def handle(self):
        n = int(self.request.payload.get('n', 10000))
        conn = self.kvdb.conn
        value = 'x' * 100
        t0 = time.perf_counter()
        for i in range(n):
            conn.set('bench:{}'.format(i % 1000), value)
        t1 = time.perf_counter()
        for i in range(n):
            conn.get('bench:{}'.format(i % 1000))
        t2 = time.perf_counter()
        self.response.payload = {'set_per_s': n / (t1 - t0), 'get_per_s': n / (t2 - t1),
                                 'set_us': (t1 - t0) / n * 1e6, 'get_us': (t2 - t1) / n * 1e6}
