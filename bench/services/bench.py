from shoal import Service


class Echo(Service):
    name = 'bench.echo'

    def handle(self):
        self.response.payload = self.request.payload
