"""The connector benchmarks from a Python service: N confirmed AMQP publishes and N SQL
round trips through the connectors, one at a time (bench/connectors.sh)."""

import time

from zato.server.service import Service


class ConnBench(Service):
    name = 'bench.connectors'

    def handle(self):
        n = int(self.request.payload['n'])
        amqp = self.request.payload['amqp']
        sql = self.out.sql.get(self.request.payload['sql'])
        body = 'x' * 100
        started = time.perf_counter()
        for _ in range(n):
            self.out.amqp.send(body, amqp)
        amqp_s = time.perf_counter() - started
        started = time.perf_counter()
        for i in range(n):
            sql.execute('select :i::int4 + 1', {'i': i}).scalar()
        sql_s = time.perf_counter() - started
        self.response.payload = {'amqp_per_s': n / amqp_s, 'sql_per_s': n / sql_s}
