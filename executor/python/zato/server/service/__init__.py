"""``from zato.server.service import Service`` resolves to Shoal's Service."""

from shoal.service import Service, Bunch, ServiceError  # noqa: F401

__all__ = ['Service', 'Bunch', 'ServiceError']
