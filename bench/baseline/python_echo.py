"""The in-process Python servers Shoal is compared with, answering the same JSON echo as
gunicorn_echo.py (parse the body, dump it back):

    granian --interface rsgi --workers 2 python_echo:rsgi_app
    granian --interface asgi --workers 2 python_echo:asgi_app
    uvicorn --workers 2 --loop uvloop --http httptools python_echo:asgi_app
"""

import json


async def rsgi_app(scope, proto):
    body = await proto()
    out = json.dumps(json.loads(body or b'null')).encode('utf-8')
    proto.response_bytes(200, [('content-type', 'application/json')], out)


async def asgi_app(scope, receive, send):
    if scope['type'] == 'lifespan':
        while True:
            message = await receive()
            if message['type'] == 'lifespan.startup':
                await send({'type': 'lifespan.startup.complete'})
            elif message['type'] == 'lifespan.shutdown':
                await send({'type': 'lifespan.shutdown.complete'})
                return
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get('body', b''))
        if not message.get('more_body'):
            break
    out = json.dumps(json.loads(b''.join(chunks) or b'null')).encode('utf-8')
    await send({'type': 'http.response.start', 'status': 200,
                'headers': [(b'content-type', b'application/json'), (b'content-length', str(len(out)).encode())]})
    await send({'type': 'http.response.body', 'body': out})
