"""The example service `shoal up` serves from examples/.

    shoal invoke hello.say-hello --data '{"name": "Shoal"}'
"""

from zato.server.service import Service


class SayHello(Service):
    """Greets whoever is named in the input (Zato code, unmodified)."""

    def handle(self):
        name = self.request.input.get('name') or 'world'
        self.response.payload = {
            'greeting': 'Hello, {}!'.format(name),
            'cid': self.cid,
        }


class Echo(Service):
    """Returns its input as it came."""

    name = 'hello.echo'

    def handle(self):
        self.response.payload = self.request.payload
