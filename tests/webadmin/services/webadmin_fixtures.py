"""Services the web admin tests drive."""

from zato.server.service import Service


class Greet(Service):
    """Greets whoever is named.

    The web admin shows this docstring on the service's page.
    """

    name = 'webadmin.greet'

    class SimpleIO:
        input_required = ('name',)
        input_optional = ('title',)
        output_required = ('greeting',)

    def handle(self):
        title = self.request.input.title or ''
        who = (title + ' ' + self.request.input.name).strip()
        self.response.payload.greeting = 'Hello, {}!'.format(who)


class Echo(Service):
    """Returns its input as it came."""

    name = 'webadmin.echo'

    def handle(self):
        self.response.payload = self.request.payload


class Broken(Service):
    """Logs a line, then fails: its call page shows the traceback and the line."""

    name = 'webadmin.broken'

    def handle(self):
        self.logger.warning('looking up invoice %s', self.request.payload.get('invoice'))
        raise LookupError('invoice-not-in-ledger')
