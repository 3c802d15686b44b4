"""Services of the monitoring test: calls that succeed, fail and are refused, messages that
are processed and dead-lettered, a scheduled job."""

from shoal import Service


class Echo(Service):
    name = 'mon.echo'

    def handle(self):
        self.response.payload = self.request.payload or {}


class Fails(Service):
    name = 'mon.fails'

    def handle(self):
        raise RuntimeError('a failure the dashboard counts')


class Publish(Service):
    """Publishes the payload's messages to the `bus` outgoing connection."""
    name = 'mon.publish'

    def handle(self):
        for m in self.request.payload['messages']:
            self.out.amqp.send(m, 'bus')


class Sink(Service):
    """Consumes from the channel's queue; a poison message fails every attempt."""
    name = 'mon.sink'

    def handle(self):
        if self.request.payload.get('poison'):
            raise ValueError('poison')
