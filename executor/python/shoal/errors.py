"""Every exception the SDK raises, in one module that imports nothing of the SDK.

The other modules import their exceptions from here (and re-export them under the names
services already use: ``shoal.service.ServiceError``, ``shoal.kvdb.ResponseError``,
``shoal.outgoing.RemoteError``...), so no SDK module needs another one just for its
errors and there is no import circle. Each class keeps the module name it has always
had, so reprs, pickles and log lines are unchanged.

Every class is a ``ServiceError``: uncaught in a service, it answers the caller with its
``code`` (Shoal's error table, docs/services.md) instead of a traceback.
"""

__all__ = [
    'ServiceError', 'BadRequest', 'NotFound', 'Forbidden', 'MethodNotAllowed',
    'SerialisationError',
    'KVDBError', 'KVDBConnectionError', 'ResponseError', 'DataError',
    'OutgoingError', 'ConnectionNotConfigured', 'ConnectionUnavailable', 'ConnectionTimeout',
    'AuthFailed', 'RemoteError', 'OutgoingBadRequest',
]


# -- the service programming model (shoal.service) ---------------------------------------

class ServiceError(Exception):
    """A failure with an error code from Shoal's error table (see docs)."""

    code = 'service_error'

    def __init__(self, message='', code=None, element=None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        # The SimpleIO element the error is about (answered as "element" in the JSON
        # error body), or None.
        self.element = element


class BadRequest(ServiceError):
    code = 'bad_request'


class NotFound(ServiceError):
    code = 'not_found'


class Forbidden(ServiceError):
    code = 'forbidden'


class MethodNotAllowed(ServiceError):
    code = 'method_not_allowed'


# -- SimpleIO (shoal.simpleio) -----------------------------------------------------------

class SerialisationError(ServiceError):
    """The service's output does not match its SimpleIO declaration (a service bug: 500)."""

    code = 'service_error'


# -- the KVDB (shoal.kvdb) ---------------------------------------------------------------

class KVDBError(ServiceError):
    """Base of KVDB errors (a ``ServiceError``: uncaught, it answers the client with its
    code, not a traceback)."""

    def __init__(self, message, code='service_error'):
        super().__init__(message, code)


class KVDBConnectionError(KVDBError):
    """The KVDB cannot be reached (no proxy, or Redis is down): the caller gets 503.
    Services know it as ``shoal.kvdb.ConnectionError`` (redis-py's name)."""

    def __init__(self, message):
        super().__init__(message, 'unavailable')


KVDBConnectionError.__name__ = KVDBConnectionError.__qualname__ = 'ConnectionError'


class ResponseError(KVDBError):
    """The KVDB refused the command (WRONGTYPE, not an integer, ...)."""


class DataError(KVDBError):
    """A value or argument the KVDB cannot take."""

    def __init__(self, message):
        super().__init__(message, 'bad_request')


# -- outgoing connections (shoal.outgoing) -----------------------------------------------

class OutgoingError(ServiceError):
    """A call through an outgoing connection failed. ``connector_code`` says how:
    ``not_configured``, ``bad_request``, ``unavailable``, ``timeout``, ``unauthorized`` or
    ``remote_error``."""

    code = 'service_error'
    connector_code = 'remote_error'

    def __init__(self, message='', code=None):
        super().__init__(message, code)


class ConnectionNotConfigured(OutgoingError):
    connector_code = 'not_configured'


class ConnectionUnavailable(OutgoingError):
    """The peer (or every connector) cannot be reached; the service answers 503."""
    code = 'unavailable'
    connector_code = 'unavailable'


class ConnectionTimeout(OutgoingError):
    """The peer did not answer in time; the service answers 504."""
    code = 'timeout'
    connector_code = 'timeout'


class AuthFailed(OutgoingError):
    """The peer refused the connection's credentials."""
    connector_code = 'unauthorized'


class RemoteError(OutgoingError):
    """The peer answered with an error (a SQL error, an FTP reply, a broker's refusal)."""
    connector_code = 'remote_error'


class OutgoingBadRequest(OutgoingError):
    """The call itself was wrong (a missing bind parameter, a bad header...)."""
    connector_code = 'bad_request'


for _module, _classes in (
        ('shoal.service', (ServiceError, BadRequest, NotFound, Forbidden, MethodNotAllowed)),
        ('shoal.simpleio', (SerialisationError,)),
        ('shoal.kvdb', (KVDBError, KVDBConnectionError, ResponseError, DataError)),
        ('shoal.outgoing', (OutgoingError, ConnectionNotConfigured, ConnectionUnavailable,
                            ConnectionTimeout, AuthFailed, RemoteError, OutgoingBadRequest))):
    for _cls in _classes:
        _cls.__module__ = _module
del _module, _classes, _cls
