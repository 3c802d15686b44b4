"""The trace a call belongs to, and what it logs, for the thread that runs it.

Shoal carries W3C trace context for the service: every way out of it — ``self.invoke``
(here or on another executor), ``invoke_async`` and the patterns, outgoing connections —
goes on with the current span's context, with no code in the service. A service may add
spans of its own around its work::

    with self.span('price.compute', items=len(items)):
        ...

and reads the trace id as ``self.trace_id`` (to log it, or to put it in a reply).

The log lines a call writes are kept with the call (bounded) for the admin's call details,
and every log record carries ``cid`` and ``trace_id``.
"""

import logging
import os
import threading
import time

__all__ = ['current', 'trace_id', 'span', 'MAX_LINES']

# The log lines kept per call, and their length.
MAX_LINES = 50
MAX_LINE = 1000

_call = threading.local()


def current():
    """The ``traceparent`` of the current span on this thread ('' when none)."""
    return getattr(_call, 'trace', '') or ''


def trace_id(traceparent=None):
    """The trace id (32 hex digits) of ``traceparent`` (the current one by default)."""
    tp = current() if traceparent is None else traceparent
    return tp[3:35] if len(tp) >= 55 else ''


def _native():
    try:
        import _shoal_native
    except ImportError:
        return None
    return _shoal_native if hasattr(_shoal_native, 'trace_span') else None


class Call:
    """What a call sets on its thread while it runs (restored after: calls nest)."""

    __slots__ = ('cid', 'trace', 'lines', '_saved')

    def __init__(self, cid, trace):
        self.cid = cid
        self.trace = trace
        self.lines = []

    def __enter__(self):
        self._saved = (getattr(_call, 'cid', ''), getattr(_call, 'trace', ''),
                       getattr(_call, 'lines', None))
        _call.cid, _call.trace, _call.lines = self.cid, self.trace, self.lines
        return self

    def __exit__(self, *exc):
        _call.cid, _call.trace, _call.lines = self._saved
        return False


class span:
    """A span around a block of the service's own work, a child of the current one; spans
    and calls made inside it are its children. Attributes are keyword arguments (str,
    int, float or bool); an exception leaving the block marks the span failed. Costs
    nothing when tracing is off."""

    __slots__ = ('name', 'attributes', '_parent', '_id', '_start', '_native')

    def __init__(self, name, **attributes):
        self.name = name
        self.attributes = attributes
        self._native = None

    def set(self, key, value):
        """Adds an attribute."""
        self.attributes[key] = value

    def __enter__(self):
        self._parent = current()
        native = _native()
        if native is None or not self._parent or not native.trace_enabled():
            return self
        self._native = native
        self._id = os.urandom(8).hex()
        self._start = time.time_ns()
        # Children of this block see this span as theirs.
        _call.trace = '{}{}{}'.format(self._parent[:36], self._id, self._parent[52:])
        return self

    def __exit__(self, kind, value, tb):
        if self._native is None:
            return False
        _call.trace = self._parent
        error = None if kind is None else '{}: {}'.format(kind.__name__, value)
        attrs = [(k, v) for k, v in self.attributes.items()
                 if isinstance(v, (str, int, float, bool))]
        try:
            self._native.trace_span(self.name, self._parent, self._id, self._start,
                                    time.time_ns(), attrs, error)
        except Exception:  # a span must never fail the service
            pass
        return False


class _CallContext(logging.Filter):
    """Adds ``cid`` and ``trace_id`` to every record, and keeps the lines a call logs."""

    def filter(self, record):
        if getattr(record, '_shoal_seen', False):
            return True  # a second handler: already done
        record._shoal_seen = True
        record.cid = getattr(_call, 'cid', '') or '-'
        record.trace_id = trace_id() or '-'
        lines = getattr(_call, 'lines', None)
        if lines is not None and len(lines) < MAX_LINES:
            try:
                message = record.getMessage()
            except Exception:
                message = str(record.msg)
            line = '{}.{:03d} {} {}: {}'.format(
                time.strftime('%H:%M:%S', time.localtime(record.created)), int(record.msecs),
                record.levelname, record.name, message)
            lines.append(line[:MAX_LINE])
        return True


class _Formatter(logging.Formatter):
    """The handler's format, with ``[cid ... trace ...]`` before the message of a record
    logged during a call."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def format(self, record):
        text = self.inner.format(record)
        cid = getattr(record, 'cid', '-')
        if cid == '-':
            return text
        tag = '[cid {}{}] '.format(cid, '' if record.trace_id == '-' else ' trace ' + record.trace_id)
        message = record.getMessage()
        at = text.rfind(message) if message else -1
        return text[:at] + tag + text[at:] if at >= 0 else tag + text


def install(root=None):
    """Adds the call context to the handlers of ``root`` (the root logger by default)."""
    root = root or logging.getLogger()
    for h in root.handlers:
        if not any(isinstance(f, _CallContext) for f in h.filters):
            h.addFilter(_CallContext())
            h.setFormatter(_Formatter(h.formatter or logging.Formatter()))
