"""The exceptions every call raises: one base class, one subclass per kind of failure.

=================  ==========================================================
class              raised when
=================  ==========================================================
``TransportError`` no answer: connection refused or reset, TLS failure, DNS
``Timeout``        no answer in time (client side), or the cluster answered 504
``AuthError``      401 or 403: missing, wrong or insufficient credentials
``NotFound``       404: unknown service, channel, object or key
``BadRequest``     400 and every other 4xx: the request was refused as given
                   (``element`` names the SimpleIO input when there is one)
``ServiceError``   5xx: the service raised, or no executor could take the call
=================  ==========================================================

Errors from an answer carry ``status``, ``code`` (Shoal's error code, e.g.
``bad_request``), ``message`` and ``cid`` (the call's correlation id, for the logs).
"""

from __future__ import annotations

from typing import Optional


class ShoalError(Exception):
    """Any failure of a call to Shoal."""

    def __init__(
        self,
        message: str,
        *,
        status: Optional[int] = None,
        code: Optional[str] = None,
        cid: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.cid = cid

    def __str__(self) -> str:
        parts = [self.message]
        if self.status is not None:
            parts.insert(0, str(self.status))
        if self.cid:
            parts.append('(cid {})'.format(self.cid))
        return ' '.join(parts)


class TransportError(ShoalError):
    """No answer came: the connection could not be made or broke."""


class Timeout(ShoalError):
    """No answer in time (the client's timeout), or the cluster's 504."""


class AuthError(ShoalError):
    """401 or 403."""


class NotFound(ShoalError):
    """404."""


class BadRequest(ShoalError):
    """400 (and other 4xx): ``element`` is the SimpleIO element at fault, if named."""

    def __init__(
        self,
        message: str,
        *,
        status: Optional[int] = None,
        code: Optional[str] = None,
        cid: Optional[str] = None,
        element: Optional[str] = None,
    ) -> None:
        super().__init__(message, status=status, code=code, cid=cid)
        self.element = element


class ServiceError(ShoalError):
    """5xx: the service failed, or the cluster could not run it."""


__all__ = ['ShoalError', 'TransportError', 'Timeout', 'AuthError', 'NotFound', 'BadRequest',
           'ServiceError']
