"""Runs the real zato-client 3.2.1 against a Shoal gateway; prints one JSON line of results.

    python zato_client_check.py ADDRESS USER PASSWORD
"""
import json
import sys

import requests
from zato.client import AnyServiceInvoker, APIClient

address, user, password = sys.argv[1:4]
out = {}

client = AnyServiceInvoker(address, '/zato/admin/invoke', (user, password))
resp = client.invoke('hello.say-hello', {'name': 'Zato'})
out['invoke'] = {'ok': resp.ok, 'data': resp.data, 'cid': resp.cid}

resp = client.invoke('zato-style.get-client-details', {'client_code': 'Z1', 'age': 44})
out['invoke_sio'] = {'ok': resp.ok, 'data': resp.data}

resp = client.invoke('no.such-service', {})
out['invoke_missing'] = {'ok': resp.ok, 'details': resp.details}

bad = AnyServiceInvoker(address, '/zato/admin/invoke', (user, 'wrong'))
resp = bad.invoke('hello.say-hello', {})
out['invoke_bad_auth'] = {'ok': resp.ok, 'status': resp.inner.status_code}

api = APIClient(address, user, password)
resp = api.post('hello.say-hello', {'name': 'API'})
out['api'] = {'ok': resp.is_ok, 'data': resp.data, 'cid': resp.cid}
resp = api.get('zato-style.my-camel-service')
out['api_get'] = {'ok': resp.is_ok, 'data': resp.data}

ping = requests.get(address + '/zato/ping').json()
out['ping'] = ping

print(json.dumps(out))
