"""``from zato.server.service import Service`` (and the SimpleIO types Zato re-exports from
this module) resolve to Shoal's classes, so Zato service code runs unmodified."""

from shoal.service import Service, Bunch, ServiceError  # noqa: F401
from shoal.simpleio import (  # noqa: F401
    AsIs, Bool, Boolean, CSV, Date, DateTime, Decimal, Dict, DictList, Float, Int, Integer, List,
    ListOfDicts, Opaque, Secret, Text, UTC, UUID, Unicode,
)

__all__ = ['Service', 'Bunch', 'ServiceError', 'AsIs', 'Bool', 'Boolean', 'CSV', 'Date',
           'DateTime', 'Decimal', 'Dict', 'DictList', 'Float', 'Int', 'Integer', 'List',
           'ListOfDicts', 'Opaque', 'Secret', 'Text', 'UTC', 'UUID', 'Unicode']
