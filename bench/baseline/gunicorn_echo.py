"""The baseline: the stack Zato runs on (gunicorn + gevent), answering a JSON echo.
Run by bench/run as `gunicorn -w 2 -k gevent gunicorn_echo:app`."""

import json


def app(environ, start_response):
    body = environ['wsgi.input'].read(int(environ.get('CONTENT_LENGTH') or 0))
    out = json.dumps(json.loads(body or b'null')).encode('utf-8')
    start_response('200 OK', [('Content-Type', 'application/json'),
                              ('Content-Length', str(len(out)))])
    return [out]
