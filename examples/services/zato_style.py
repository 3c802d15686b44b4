"""Zato-style services, written the way the Zato documentation shows them. They run on
Shoal unmodified; docs/services.md walks through them and the test suite runs them.

Module name zato_style, so classes without a `name` are called zato-style.<class-name>.
"""

from zato.server.service import Service, Int, Bool, List, Date, Decimal


class GetClientDetails(Service):
    """SimpleIO with required and optional input, typed output, and the default
    {"response": ...} wrapper of a `class SimpleIO`."""

    class SimpleIO:
        input_required = 'client_code', Int('age')
        input_optional = Bool('is_vip'), List('tags', default=[])
        output_required = 'name', Int('age'), 'segment'
        output_optional = Date('member_since'), Decimal('balance')

    def handle(self):
        data = self.request.input
        self.logger.info('cid:%s client:%s', self.cid, data.client_code)
        self.response.payload.name = 'Client {}'.format(data.client_code)
        self.response.payload.age = data.age
        self.response.payload.segment = 'vip' if data.is_vip else 'regular'
        self.response.payload.member_since = '2019-03-01'
        self.response.payload.balance = '1250.50'


class GetCustomer(Service):
    """I/O declared on the class (Zato 3.1+ style): no wrapper; '-' marks optional."""

    name = 'crm.get-customer'
    input = 'cust_code', '-fields'
    output = 'cust_code', 'name', '-email'

    def handle(self):
        self.response.payload = {
            'cust_code': self.request.input.cust_code,
            'name': 'Alice',
            'email': None,
        }


class CreateOrder(Service):
    """Hooks, status code and headers."""

    name = 'orders.create'

    class SimpleIO:
        input_required = 'sku', Int('qty')
        output_required = Int('order_id'), 'status'
        response_elem = None

    def before_handle(self):
        self.environ['started'] = True

    def handle(self):
        if self.request.input.qty <= 0:
            self.response.status_code = 422
            self.response.payload = {'order_id': 0, 'status': 'rejected'}
            return
        self.response.status_code = 201
        self.response.headers['Location'] = '/orders/1001'
        self.response.payload = {'order_id': 1001, 'status': 'created'}

    def after_handle(self):
        self.response.headers['X-Handled-By'] = self.name


class OrderStatus(Service):
    """REST verbs: handle_GET and handle_DELETE; any other verb is 405."""

    name = 'orders.status'

    def handle_GET(self):
        self.response.payload = {'order_id': self.request.input.get('order_id'), 'status': 'shipped'}

    def handle_DELETE(self):
        self.response.status_code = 204


class GetOrderSummary(Service):
    """An invoke chain: this service calls two others and combines their answers."""

    name = 'orders.summary'

    def handle(self):
        customer = self.invoke('crm.get-customer', {'cust_code': 'C1'})
        order = self.invoke('orders.create', {'sku': 'X-1', 'qty': 2})
        self.response.payload = {'customer': customer['name'], 'order_id': order['order_id']}


class AcceptOnlyJson(Service):
    """accept(): return False to refuse a request (400) before handle runs."""

    name = 'guard.json-only'

    def accept(self):
        return isinstance(self.request.payload, dict)

    def handle(self):
        self.response.payload = {'ok': True}


class MyCamelService(Service):
    """No name attribute: called zato-style.my-camel-service."""

    def handle(self):
        self.response.payload = {'name': self.name}
