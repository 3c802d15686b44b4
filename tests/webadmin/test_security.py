"""The web admin's defences, checked without a browser: sessions, CSRF, Origin, CSP,
cookie flags, and no 500 for whatever a browser (or an attacker) sends."""

import re

import urllib.parse

import httpx
import pytest

from conftest import PASSWORD

CSP = "default-src 'self'; script-src 'self'; style-src 'self'; frame-ancestors 'none'; form-action 'self'"

PAGES = ['/admin/', '/admin/services', '/admin/services/webadmin.greet', '/admin/deploy', '/admin/channels',
         '/admin/channels/new', '/admin/channels/echo', '/admin/outgoing', '/admin/outgoing/new?type=ftp',
         '/admin/security', '/admin/security/new', '/admin/jobs', '/admin/jobs/new', '/admin/kvdb',
         '/admin/tail', '/admin/tail?failed=true', '/admin/calls/no-such-cid']


def session(cluster):
    """A logged-in httpx client and its CSRF token."""
    c = httpx.Client(base_url=cluster.admin_url, headers={'Origin': cluster.admin_url}, timeout=10)
    r = c.post('/admin/login', data={'username': 'admin', 'password': PASSWORD})
    assert r.status_code == 303, r.text
    page = c.get('/admin/')
    token = re.search(r'name="_csrf" value="([0-9a-f]+)"', page.text).group(1)
    return c, token, r


def test_the_session_cookie_has_its_flags(cluster):
    _, _, r = session(cluster)
    cookie = r.headers['set-cookie']
    for flag in ['HttpOnly', 'SameSite=Strict', 'Path=/admin']:
        assert flag in cookie, cookie
    assert 'Secure' not in cookie  # served over plain HTTP on loopback
    # Behind a TLS proxy (X-Forwarded-Proto: https) the cookie is Secure.
    r = httpx.post(cluster.admin_url + '/admin/login', data={'username': 'admin', 'password': PASSWORD},
                   headers={'Origin': cluster.admin_url, 'X-Forwarded-Proto': 'https'})
    assert r.status_code == 303 and 'Secure' in r.headers['set-cookie']


def test_every_page_carries_the_csp(cluster):
    c, _, _ = session(cluster)
    anonymous = httpx.Client(base_url=cluster.admin_url, timeout=10)
    for path in PAGES + ['/admin/no-such-page', '/admin/services/no.such.service']:
        r = c.get(path)
        assert r.headers.get('content-security-policy') == CSP, path
        assert r.headers.get('x-frame-options') == 'DENY', path
        assert r.status_code < 500, (path, r.status_code)
        assert '<script>' not in r.text and ' style="' not in r.text and ' onclick' not in r.text, path
    for path in ['/admin/login', '/admin/', '/admin/services']:
        assert anonymous.get(path).headers.get('content-security-policy') == CSP, path


def test_pages_and_fragments_need_a_session(cluster):
    anonymous = httpx.Client(base_url=cluster.admin_url, timeout=10)
    for path in PAGES + ['/admin/tail/stream']:
        r = anonymous.get(path)
        # To the login, which returns to the page asked for.
        location = urllib.parse.urlsplit(r.headers.get('location', ''))
        assert r.status_code == 303 and location.path == '/admin/login', path
        assert urllib.parse.parse_qs(location.query)['next'] == [path], (path, r.headers['location'])
        r = anonymous.get(path, headers={'HX-Request': 'true'})
        assert r.status_code == 401 and r.headers['hx-redirect'] == '/admin/login', path
    r = anonymous.post('/admin/kvdb/set', data={'key': 'k', 'value': 'v'},
                       headers={'Origin': cluster.admin_url})
    assert r.status_code == 401
    # A made-up session cookie is no session.
    forged = httpx.Client(base_url=cluster.admin_url, cookies={'shoal_session': 'f' * 64}, timeout=10)
    r = forged.get('/admin/services')
    assert r.status_code == 303


def test_a_state_change_without_the_csrf_token_is_refused(cluster):
    c, token, _ = session(cluster)
    r = c.post('/admin/kvdb/set', data={'key': 'csrf/probe', 'value': 'x'})
    assert r.status_code == 403 and 'CSRF' in r.text
    r = c.post('/admin/kvdb/set', data={'key': 'csrf/probe', 'value': 'x', '_csrf': 'not-the-token'})
    assert r.status_code == 403
    r = c.post('/admin/channels/echo/delete', headers={'X-CSRF-Token': 'f' * 64})
    assert r.status_code == 403
    assert cluster.api('GET', '/kvdb/csrf/probe').status_code == 404
    assert cluster.api('GET', '/channels/echo').status_code == 200
    # With the token (as a field or as htmx's header) it goes through.
    assert c.post('/admin/kvdb/set', data={'key': 'csrf/probe', 'value': 'x', '_csrf': token}).status_code == 200
    assert c.post('/admin/kvdb/delete', data={'key': 'csrf/probe'},
                  headers={'X-CSRF-Token': token}).status_code == 200


def test_a_state_change_from_a_foreign_origin_is_refused(cluster):
    c, token, _ = session(cluster)
    for origin in ['http://evil.example', 'null', cluster.admin_url + '.evil.example']:
        r = c.post('/admin/kvdb/set', data={'key': 'origin/probe', 'value': 'x', '_csrf': token},
                   headers={'Origin': origin})
        assert r.status_code == 403 and 'refused' in r.text, origin
    # No Origin and no Referer at all: refused too.
    bare = httpx.Client(base_url=cluster.admin_url, cookies=c.cookies, timeout=10)
    r = bare.post('/admin/kvdb/set', data={'key': 'origin/probe', 'value': 'x', '_csrf': token})
    assert r.status_code == 403
    # A login posted from elsewhere is refused before the password is looked at.
    r = httpx.post(cluster.admin_url + '/admin/login', data={'username': 'admin', 'password': PASSWORD},
                   headers={'Origin': 'http://evil.example'})
    assert r.status_code == 403
    assert cluster.api('GET', '/kvdb/origin/probe').status_code == 404


HOSTILE = [
    ('/admin/channels/save', {'_type': 'http', 'name': '../../etc', 'service': 'x', 'url_path': '/x'}),
    ('/admin/channels/save', {'_type': 'nope', 'name': 'x'}),
    ('/admin/channels/save', {'_type': 'http', 'name': 'x' * 5000, 'service': 'x', 'url_path': '/x'}),
    ('/admin/channels/save', {'_type': 'http', 'name': 'ok', 'service': 'x', 'url_path': 'no-slash'}),
    ('/admin/channels/save', {'_type': 'soap', 'name': 'ok', 'service': 'x', 'url_path': '/s', 'soap_version': '3'}),
    ('/admin/outgoing/save', {'_type': 'http', 'name': 'o', 'address': 'not a url', 'security': '{bad json'}),
    ('/admin/outgoing/save', {'_type': 'ftp', 'name': 'o', 'host': 'h', 'port': '99999999'}),
    ('/admin/security/save', {'_type': 'basic_auth', 'name': 's', 'username': 'u', 'password': '***'}),
    ('/admin/jobs/save', {'name': 'j', 'type': 'cron', 'service': 'x', 'cron': 'not cron'}),
    ('/admin/jobs/save', {'name': 'j', 'type': 'interval', 'service': 'x', 'extra': '[1,'}),
    ('/admin/jobs/no-such-job/run', {}),
    ('/admin/channels/no-such/delete', {}),
    ('/admin/kvdb/set', {'key': '', 'value': 'v'}),
    ('/admin/kvdb/set', {'key': 'k' * 2000, 'value': 'v'}),
    ('/admin/kvdb/delete', {'key': 'no/such/key'}),
    ('/admin/deploy/rollback', {'module': '../x'}),
    ('/admin/deploy/rollback', {'module': 'never_deployed'}),
    ('/admin/services/no.such/invoke', {'payload': '{}'}),
    ('/admin/services/webadmin.greet/invoke', {'payload': '[', 'timeout_ms': 'soon'}),
]


@pytest.mark.parametrize('path,form', HOSTILE)
def test_bad_input_gets_a_precise_4xx_and_changes_nothing(cluster, path, form):
    c, token, _ = session(cluster)
    before = cluster.api('GET', '/export').json()
    r = c.post(path, data=dict(form, _csrf=token))
    assert r.status_code < 500, (path, r.status_code, r.text[-500:])
    assert r.status_code >= 400 or 'invoke' in path, (path, r.status_code)
    assert re.search(r'role="alert"[^>]*>\s*\S', r.text) or 'data-testid="invoke-status">4' in r.text, r.text[-800:]
    assert cluster.api('GET', '/export').json() == before


def test_a_deploy_upload_that_is_not_multipart_is_refused(cluster):
    c, token, _ = session(cluster)
    r = c.post('/admin/deploy', content=b'garbage', headers={'X-CSRF-Token': token,
                                                             'Content-Type': 'text/plain'})
    assert r.status_code == 400
    r = c.post('/admin/deploy', files={'files': ('x.py', b'\xff\xfe not utf-8')},
               headers={'X-CSRF-Token': token})
    assert r.status_code == 400 and 'UTF-8' in r.text
    # Without the header, the token must be in the multipart body.
    r = c.post('/admin/deploy', files={'files': ('x.py', b'x = 1\n')})
    assert r.status_code == 403


def test_failed_logins_are_slowed_down(cluster):
    import time
    anonymous = httpx.Client(base_url=cluster.admin_url, headers={'Origin': cluster.admin_url}, timeout=30)
    for _ in range(3):
        assert anonymous.post('/admin/login', data={'username': 'admin', 'password': 'x'}).status_code == 401
    started = time.monotonic()
    assert anonymous.post('/admin/login', data={'username': 'admin', 'password': 'x'}).status_code == 401
    assert time.monotonic() - started >= 0.45
    # The right password still logs in (after the wait), and clears the count.
    assert anonymous.post('/admin/login', data={'username': 'admin', 'password': PASSWORD}).status_code == 303


def test_the_api_keeps_a_secret_given_back_as_it_shows_it(cluster):
    ftp = {'name': 'keep-ftp', 'type': 'ftp', 'host': '127.0.0.1', 'username': 'u', 'password': 'ftp-secret'}
    assert cluster.api('PUT', '/outgoing/keep-ftp', json=ftp).status_code == 200
    shown = cluster.api('GET', '/outgoing/keep-ftp').json()
    assert shown['password'] == '***'
    # Sent back as shown: the stored secret is kept ("unchanged"), not replaced by stars.
    r = cluster.api('PUT', '/outgoing/keep-ftp', json=shown)
    assert r.status_code == 200 and r.json()['result'] == 'unchanged', r.text
    # Stars with nothing stored to keep are refused.
    r = cluster.api('PUT', '/outgoing/new-ftp', json=dict(shown, name='new-ftp'))
    assert r.status_code == 400 and 'no stored one' in r.json()['error']['message']
    r = cluster.api('PUT', '/security/new-sec', json={'name': 'new-sec', 'type': 'apikey',
                                                       'header': 'X-Key', 'key': '***'})
    assert r.status_code == 400
    cluster.api('DELETE', '/outgoing/keep-ftp')
