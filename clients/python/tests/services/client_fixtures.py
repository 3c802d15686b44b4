"""Services the client tests call (deployed from the pickup folder of their cluster)."""

import time

from shoal import Int, Service


class Echo(Service):
    """Answers the payload it got, and the caller's cid."""
    name = 'client.echo'

    def handle(self):
        self.response.payload = {'got': self.request.payload, 'cid': self.cid}


class Slow(Service):
    """Sleeps ``seconds`` (default 3) before answering."""
    name = 'client.slow'

    def handle(self):
        seconds = (self.request.payload or {}).get('seconds', 3)
        time.sleep(float(seconds))
        self.response.payload = {'slept': seconds}


class Needs(Service):
    """SimpleIO: a required Text and a required Int."""
    name = 'client.needs'

    class SimpleIO:
        input_required = ('cust_code', Int('age'))
        output_optional = ('ok',)

    def handle(self):
        self.response.payload.ok = True


class Fails(Service):
    """Raises: a 500 service_error for the caller, the traceback in the log."""
    name = 'client.fails'

    def handle(self):
        raise RuntimeError('this service always fails')
