"""Shoal's Python SDK: write services as Zato does.

    from shoal import Service

    class GetCustomer(Service):
        name = 'crm.get-customer'

        def handle(self):
            self.response.payload = {'id': self.request.input.cust_id}

Zato code runs unmodified: ``from zato.server.service import Service`` resolves to the same
classes.
"""

from shoal.service import (  # noqa: F401
    Service,
    Request,
    Response,
    ServiceError,
    BadRequest,
    NotFound,
    Forbidden,
    MethodNotAllowed,
    Bunch,
    service_name,
)

from shoal.simpleio import (  # noqa: F401,E402
    AsIs, Bool, Boolean, CSV, Date, DateTime, Decimal, Dict, DictList, Float, Int, Integer, List,
    ListOfDicts, Opaque, Secret, Text, UTC, UUID, Unicode,
)

__all__ = ['Service', 'Request', 'Response', 'ServiceError', 'BadRequest', 'NotFound',
           'Forbidden', 'MethodNotAllowed', 'Bunch', 'service_name',
           'AsIs', 'Bool', 'Boolean', 'CSV', 'Date', 'DateTime', 'Decimal', 'Dict', 'DictList',
           'Float', 'Int', 'Integer', 'List', 'ListOfDicts', 'Opaque', 'Secret', 'Text', 'UTC',
           'UUID', 'Unicode']
