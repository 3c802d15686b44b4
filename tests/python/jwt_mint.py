"""Real keys and real tokens for the JWT tests, made with PyJWT and cryptography.

    python3 jwt_mint.py keys DIR          -> makes rsa-1, rsa-2, ec-1 key pairs in DIR (PEM)
                                             and prints the public JWKS of each as JSON
    python3 jwt_mint.py token DIR SPEC    -> prints one token; SPEC is JSON:
        {"key": "rsa-1", "alg": "RS256", "kid": "rsa-1", "claims": {...},
         "exp_in": 300, "nbf_in": 0, "tamper": false, "none": false, "hs_with_public": false}

The tests serve the JWKS themselves (a real HTTP server) and check what the gateway does
with each token.
"""

import base64
import hashlib
import hmac
import json
import os
import sys
import time

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

KEYS = {'rsa-1': 'rsa', 'rsa-2': 'rsa', 'ec-1': 'ec'}


def make_keys(folder):
    os.makedirs(folder, exist_ok=True)
    jwks = {}
    for name, kind in KEYS.items():
        if kind == 'rsa':
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            alg = jwt.algorithms.RSAAlgorithm
            jwk_alg = 'RS256'
        else:
            key = ec.generate_private_key(ec.SECP256R1())
            alg = jwt.algorithms.ECAlgorithm
            jwk_alg = 'ES256'
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        with open(os.path.join(folder, name + '.pem'), 'wb') as f:
            f.write(pem)
        pub = key.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
        with open(os.path.join(folder, name + '.pub.pem'), 'wb') as f:
            f.write(pub)
        jwk = json.loads(alg.to_jwk(key.public_key()))
        jwk.update({'kid': name, 'use': 'sig', 'alg': jwk_alg})
        jwks[name] = jwk
    print(json.dumps(jwks))


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b'=').decode()


def make_token(folder, spec):
    now = int(time.time())
    claims = dict(spec.get('claims', {}))
    if 'exp_in' in spec:
        claims['exp'] = now + spec['exp_in']
    if 'nbf_in' in spec:
        claims['nbf'] = now + spec['nbf_in']
    claims.setdefault('iat', now)
    headers = {'kid': spec['kid']} if spec.get('kid') else {}
    if spec.get('none'):
        token = b64(json.dumps({'alg': 'none', 'typ': 'JWT', **headers}).encode()) + '.' + \
            b64(json.dumps(claims).encode()) + '.'
    elif spec.get('hs_with_public'):
        # The classic confusion: HS256 "signed" with the issuer's public key as the secret.
        with open(os.path.join(folder, spec['key'] + '.pub.pem'), 'rb') as f:
            public = f.read()
        # (PyJWT refuses to do it, rightly: made by hand.)
        signing_input = b64(json.dumps({'alg': 'HS256', 'typ': 'JWT', **headers}).encode()) + '.' + \
            b64(json.dumps(claims).encode())
        sig = hmac.new(public, signing_input.encode(), hashlib.sha256).digest()
        token = signing_input + '.' + b64(sig)
    else:
        with open(os.path.join(folder, spec['key'] + '.pem'), 'rb') as f:
            private = f.read()
        token = jwt.encode(claims, private, algorithm=spec['alg'], headers=headers)
    if spec.get('tamper'):
        head, payload, sig = token.split('.')
        data = json.loads(base64.urlsafe_b64decode(payload + '=' * (-len(payload) % 4)))
        data['sub'] = 'someone-else'
        token = '.'.join([head, b64(json.dumps(data).encode()), sig])
    print(token)


if __name__ == '__main__':
    if sys.argv[1] == 'keys':
        make_keys(sys.argv[2])
    else:
        make_token(sys.argv[2], json.loads(sys.argv[3]))
